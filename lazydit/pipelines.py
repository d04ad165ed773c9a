"""Models as they are published: a lazydit safetensors file, an official facebookresearch/DiT
``.pt``, a diffusers transformer folder, or a diffusers pipeline folder (``model_index.json``,
``transformer/``, ``vae/``, ``scheduler/``, the layout DiT-XL-2-256 is published in).

Loading one gives the DiT with the sampler its source uses (``DiT.sampler``: clamp x0 or not,
guided channels, the noise estimate after clamping) and, for a latent model, the VAE that turns
the final latent into a picture: diffusers' own ``AutoencoderKL``, decoded at ``x / scaling``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from .checkpoints import DEFAULT_MODEL_NAME, CheckpointError, default_model, load_model, read_json
from .diffusion import NUM_TRAIN_TIMESTEPS, SamplerSettings
from .model import DiT, DiT_models
from .options import opt

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
# The VAE DiT-XL-2-256 ships with (stabilityai/sd-vae-ft-ema): the configuration timing bundles use.
SD_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 256,
    "scaling_factor": 0.18215,
}
# What lazydit's DDIM reproduces: a scheduler that says otherwise is refused, not approximated.
SCHEDULE = {"num_train_timesteps": NUM_TRAIN_TIMESTEPS, "beta_schedule": "linear", "beta_start": 0.0001,
            "beta_end": 0.02, "prediction_type": "epsilon", "set_alpha_to_one": True, "steps_offset": 0,
            "timestep_spacing": "leading", "thresholding": False}  # fmt: skip


@dataclass
class ModelSource:
    """Which model a command runs, and what the user changes of its sampler."""

    model: str = opt(
        "default",
        "'default' (the embedded digits DiT), a lazydit .safetensors, an official DiT .pt, a diffusers "
        "transformer folder, or a diffusers pipeline folder (model_index.json, transformer/, vae/, scheduler/)",
    )
    size: str | None = opt(None, "registry size (e.g. DiT-XL/2) of a checkpoint that carries no config")
    vae: str | None = opt(
        None, "'random': a pipeline folder's VAE configuration with random weights (the bundle is timing-only)"
    )
    clip_x0: bool | None = opt(
        None,
        "clamp the predicted clean sample to [-1, 1] (default: as the model's source does: models trained here "
        "clamp, official DiT checkpoints do not, a diffusers folder follows its scheduler's clip_sample)",
    )
    guided_channels: int | None = opt(
        None, "guide only the first N channels (the official DiT code guides 3 of 4); 0: every channel"
    )

    def sampler(self, settings: SamplerSettings) -> SamplerSettings:
        """``settings`` (a model's or a plan's) with what the user changed on the command line."""
        return settings.with_overrides(self.clip_x0, self.guided_channels)


@dataclass
class LoadedModel:
    """A DiT and, for a latent model, its VAE (``timing_only``: random weights of the real config)."""

    dit: DiT
    vae: nn.Module | None = None
    timing_only: bool = False


def load(source: ModelSource | None = None) -> LoadedModel:
    """Whatever ``--model`` names, with ``--size`` for a checkpoint without a config, ``--vae
    random`` for a pipeline folder without VAE weights, and the user's sampler choices applied."""
    source = source or ModelSource()
    model, size, vae = source.model, source.size, source.vae
    if size is not None and size not in DiT_models:
        raise CheckpointError(f"unknown size {size!r}; choose one of {sorted(DiT_models)}")
    if vae not in (None, "random"):
        raise CheckpointError(
            f"--vae takes only 'random' (the folder's VAE configuration, random weights), not {vae!r}"
        )
    if model in (None, "default", DEFAULT_MODEL_NAME):
        loaded = LoadedModel(default_model())
    else:
        path = Path(model)
        if path.is_dir():
            loaded = _load_folder(path, size, vae)
        elif path.is_file():
            loaded = LoadedModel(load_model(path, size))
        else:
            raise CheckpointError(
                f"{path}: no such file or folder; --model takes 'default', a lazydit .safetensors, an official "
                "DiT .pt, a diffusers transformer folder or a diffusers pipeline folder"
            )
    if vae and loaded.vae is None:
        raise CheckpointError(f"--vae random needs a pipeline folder with a vae/ configuration; {model} has none")
    loaded.dit.sampler = source.sampler(loaded.dit.sampler)
    return loaded


def _load_folder(path: Path, size: str | None, vae: str | None) -> LoadedModel:
    if (path / "model_index.json").is_file():
        return _load_pipeline(path, size, vae)
    if (path / "config.json").is_file():
        return LoadedModel(_load_transformer(path, size))
    raise CheckpointError(
        f"{path} is neither a diffusers pipeline folder (no model_index.json) nor a transformer folder "
        "(no config.json); pass the folder that holds one of them"
    )


def _weights_in(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder} has a config.json but no weights: expected {' or '.join(WEIGHT_FILES)}")


def _load_transformer(folder: Path, size: str | None) -> DiT:
    weights = _weights_in(folder)
    dit = load_model(weights, size)
    config, arch = _read_json(folder / "config.json"), dit.config
    read = {
        "patch_size": arch.patch_size,
        "in_channels": arch.in_channels,
        "out_channels": arch.out_channels,
        "num_layers": arch.depth,
        "num_embeds_ada_norm": arch.num_classes,
    }
    if "num_attention_heads" in config and "attention_head_dim" in config:
        config["hidden_size"] = config["num_attention_heads"] * config["attention_head_dim"]
        read["hidden_size"] = arch.hidden_size
    wrong = {k: (config[k], v) for k, v in read.items() if config.get(k) is not None and config[k] != v}
    if wrong:
        said = ", ".join(f"{k} {c} (the weights have {w})" for k, (c, w) in wrong.items())
        raise CheckpointError(f"{folder / 'config.json'} disagrees with {weights.name}: {said}")
    return dit


def _read_json(path: Path) -> dict:
    data = read_json(path, "the diffusers config")
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def scheduler_sampler(config_path: Path) -> SamplerSettings:
    """The sampler a diffusers ``scheduler_config.json`` describes, if lazydit's DDIM can run it."""
    config = _read_json(config_path)
    if config.get("_class_name") != "DDIMScheduler":
        raise CheckpointError(f"{config_path}: {config.get('_class_name')} is not supported; lazydit samples with DDIM")
    for key, want in SCHEDULE.items():
        have = config.get(key, want)
        if have != want and not (isinstance(want, float) and isinstance(have, float) and abs(have - want) < 1e-12):
            raise CheckpointError(f"{config_path}: {key} is {have!r}; lazydit's DDIM reproduces only {want!r}")
    if config.get("clip_sample", True) and float(config.get("clip_sample_range", 1.0)) != 1.0:
        raise CheckpointError(f"{config_path}: clip_sample_range {config['clip_sample_range']} (only 1.0 is supported)")
    return SamplerSettings(clip_x0=bool(config.get("clip_sample", True)), eps_after_clip="model")


def _load_pipeline(root: Path, size: str | None, vae: str | None) -> LoadedModel:
    index = _read_json(root / "model_index.json")
    if not (root / "transformer").is_dir():
        raise CheckpointError(
            f"{root}: the pipeline has no transformer/ folder (model_index.json lists {sorted(index)})"
        )
    dit = _load_transformer(root / "transformer", size)
    scheduler = root / "scheduler" / "scheduler_config.json"
    if not scheduler.is_file():
        raise CheckpointError(
            f"{root}: missing {scheduler.relative_to(root)} (the sampler the pipeline was published with)"
        )
    dit.sampler = scheduler_sampler(scheduler)
    decoder, timing_only = _load_vae(root / "vae", vae, dit.config.in_channels)
    return LoadedModel(dit, decoder, timing_only)


def _load_vae(folder: Path, vae: str | None, latent_channels: int) -> tuple[nn.Module, bool]:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: missing config.json (the pipeline's VAE)")
    config = _read_json(config_path)
    if config.get("_class_name") != "AutoencoderKL":
        raise CheckpointError(f"{config_path}: {config.get('_class_name')} is not supported (AutoencoderKL is)")
    if config.get("latent_channels") != latent_channels:
        raise CheckpointError(
            f"{config_path}: the VAE has {config.get('latent_channels')} latent channels, the transformer "
            f"{latent_channels}; they are not from the same pipeline"
        )
    if vae == "random":
        return random_vae(config), True
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        raise CheckpointError(
            f"{folder} has no VAE weights ({' or '.join(WEIGHT_FILES)}); add them, or pass --vae random for a "
            "timing-only bundle with a VAE of this configuration and random weights"
        )
    from diffusers import AutoencoderKL

    try:
        return AutoencoderKL.from_pretrained(str(folder)).eval(), False
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{weights}: cannot load the VAE: {err}") from err


class LatentDecoder(nn.Module):
    """Final latent -> uint8 RGB picture through the pipeline's own VAE (diffusers' AutoencoderKL):
    ``decode(x / scaling_factor)``, then [-1, 1] -> [0, 255] rounded, as diffusers' pipelines do.
    ``pixels`` is the float part (what a backend accelerates); rounding and the uint8 cast follow."""

    input_names: ClassVar[list[str]] = ["x"]
    output_names: ClassVar[list[str]] = ["image"]

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.pixels = VaePixels(vae)

    def with_pixels(self, pixels: nn.Module) -> LatentDecoder:
        """The same decoder with another implementation of its float part (e.g. a lowered one)."""
        decoder = copy.copy(self)
        decoder._modules = {**self._modules, "pixels": pixels}
        return decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (pixels,) = self.pixels(x)
        return torch.round(pixels).permute(0, 2, 3, 1).to(torch.uint8)


class VaePixels(nn.Module):
    """The VAE's picture as floats in [0, 255], not yet rounded."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae
        self.scaling_factor = float(vae.config.scaling_factor)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        img = self.vae.decode(x / self.scaling_factor).sample
        return (torch.clamp(img / 2 + 0.5, 0.0, 1.0) * 255.0,)


def vae_image(vae: nn.Module, latent_size: int) -> dict:
    """The picture a VAE decodes a ``latent_size`` latent into: each up block but the last doubles it."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return {"height": latent_size * factor, "width": latent_size * factor, "channels": int(vae.config.out_channels)}


def random_vae(config: dict | None = None, seed: int = 0) -> nn.Module:
    """diffusers' AutoencoderKL of ``config`` (default: sd-vae-ft-ema's) with seeded random weights."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    known = {k: v for k, v in (config or SD_VAE_CONFIG).items() if not k.startswith("_")}
    return AutoencoderKL.from_config(known).eval()

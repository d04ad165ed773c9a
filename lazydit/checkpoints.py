"""Loading and saving DiT weights.

Three layouts load into the same :class:`~lazydit.model.DiT`:

* the project's own: ``<name>.safetensors`` next to ``<name>.json`` (``{"config": DiTConfig fields, ...}``);
* an official facebookresearch/DiT ``.pt``: a flat (EMA) state dict, or a ``train.py`` checkpoint
  ``{"model", "ema", "opt", "args"}`` whose ``ema`` entry is used (``model`` if there is no ``ema``);
* a diffusers ``DiTTransformer2DModel`` state dict (``.safetensors`` or ``.bin``), as written by
  diffusers' ``scripts/convert_dit_to_diffusers.py``: q/k/v split into ``attn1.to_q/k/v``, the
  timestep and class embedders copied into every block's ``norm1.emb``, the final adaLN as
  ``proj_out_1`` (chunked ``shift, scale`` like the original) and no stored position table.

diffusers embeds timesteps with ``Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1)``:
cos first like the original, but frequencies divided by ``half - 1 = 127`` instead of 128. A
diffusers checkpoint therefore loads with ``timestep_freq_shift=1``.

Files are recognised by their content, not their suffix. Pickles are opened with
``weights_only=True`` (plus ``argparse.Namespace``, which official training checkpoints store
under ``args``); one that needs any other code to load is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import struct
from pathlib import Path

import torch

from .diffusion import DIFFUSERS_SAMPLER, OFFICIAL_SAMPLER
from .files import atomic_write
from .model import DiT, DiT_models, DiTConfig, get_2d_sincos_pos_embed

DEFAULT_MODEL_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL_NAME = "dit-digits"

OWN_FORMAT = "lazydit"
DIFFUSERS_CLASSES = ("DiTTransformer2DModel", "Transformer2DModel")
DIFFUSERS_NORM_EPS = 1e-5  # DiTTransformer2DModel's default norm_eps


class CheckpointError(ValueError):
    """A file that is not a usable DiT checkpoint; the message says what is wrong."""


# ----------------------------------------------------------------------------- saving


def save_model(model: DiT, path: str | Path, dtype: torch.dtype = torch.float32, metadata: dict | None = None) -> Path:
    """Write ``path`` (.safetensors) and its JSON config beside it; returns the .safetensors path."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    meta = {"format": OWN_FORMAT, "dtype": str(dtype).removeprefix("torch.")}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta))
    config = {**(metadata or {}), "config": model.config.to_dict()}
    atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
    return path


# ----------------------------------------------------------------------------- reading files


def _sniff(path: Path) -> str:
    """``safetensors``, ``torch`` (zip or legacy pickle) or a CheckpointError."""
    with open(path, "rb") as f:
        head = f.read(9)
    if not head:
        raise CheckpointError(f"{path}: empty file")
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > 1:
        return "safetensors"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "torch"
    raise CheckpointError(
        f"{path}: neither a safetensors file nor a PyTorch checkpoint (starts with bytes {head[:8].hex()})"
    )


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as err:  # SafetensorError, OSError, ... : all mean an unreadable file
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {err}") from err
    return state, metadata


def _read_torch(path: Path) -> object:
    import pickle

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found:
            raise CheckpointError(
                f"{path}: refused: loading it would need to run {found.group(1)}, not just read tensors; "
                "re-save it as a plain state dict of tensors"
            ) from err
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt pickle)") from err
    except Exception as err:  # RuntimeError, EOFError, OSError ... from a truncated or damaged archive
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {type(err).__name__}: {err}"
        ) from err


def _state_from_pickle(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded ``.pt``: the object itself, or its ema / model / state_dict entry."""
    if isinstance(obj, dict):
        for key in ("ema", "model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    tensors = [k for k, v in obj.items() if isinstance(v, torch.Tensor)]
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors (entries: {sorted(map(str, obj))[:8]})")
    others = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise CheckpointError(
            f"{path}: not a state dict of tensors: entry {others[0]!r} is a {type(obj[others[0]]).__name__}"
        )
    return dict(obj)


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a checkpoint file and its safetensors metadata (empty for a ``.pt``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if _sniff(path) == "safetensors":
        return _read_safetensors(path)
    return _state_from_pickle(_read_torch(path), path), {}


# ----------------------------------------------------------------------------- layouts


def detect_layout(state: dict) -> str:
    if "x_embedder.proj.weight" in state:
        return "official"
    if "pos_embed.proj.weight" in state:
        return "diffusers"
    raise CheckpointError(
        "unrecognised key layout: expected official DiT keys (x_embedder.proj.weight ...) "
        f"or diffusers DiTTransformer2DModel keys (pos_embed.proj.weight ...); found {sorted(state)[:5]} ..."
    )


def _block_indices(state: dict, prefix: str) -> list[int]:
    found = sorted({int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))})
    if not found:
        raise CheckpointError(f"no {prefix}N.* keys: the checkpoint has no transformer blocks")
    if found != list(range(len(found))):
        raise CheckpointError(f"{prefix}N.* keys are not numbered 0..{len(found) - 1}: {found}")
    return found


_EMBEDDERS = {
    "t_embedder.mlp.0": "timestep_embedder.linear_1",
    "t_embedder.mlp.2": "timestep_embedder.linear_2",
}


def diffusers_to_official(state: dict) -> dict:
    """Rename a diffusers DiTTransformer2DModel state dict to the official layout.

    Every diffusers key must be used exactly once, and the per-block embedder copies must be equal:
    diffusers recomputes the conditioning in each block from that block's copy, while this model
    has one shared embedder.
    """
    rest = dict(state)

    def take(key: str) -> torch.Tensor:
        if key not in rest:
            raise CheckpointError(f"diffusers layout: missing key {key!r}")
        return rest.pop(key)

    out: dict[str, torch.Tensor] = {}
    for kind in ("weight", "bias"):
        out[f"x_embedder.proj.{kind}"] = take(f"pos_embed.proj.{kind}")
        out[f"final_layer.adaLN_modulation.1.{kind}"] = take(f"proj_out_1.{kind}")
        out[f"final_layer.linear.{kind}"] = take(f"proj_out_2.{kind}")
    if "pos_embed.pos_embed" in rest:  # only stored by PatchEmbed(pos_embed_max_size=...)
        out["pos_embed"] = take("pos_embed.pos_embed")

    blocks = _block_indices(state, "transformer_blocks.")
    shared: dict[str, torch.Tensor] = {}
    for i in blocks:
        src, dst = f"transformer_blocks.{i}.", f"blocks.{i}."
        emb = src + "norm1.emb."
        copies = {
            f"{ours}.{kind}": take(f"{emb}{theirs}.{kind}")
            for ours, theirs in _EMBEDDERS.items()
            for kind in ("weight", "bias")
        }
        copies["y_embedder.embedding_table.weight"] = take(emb + "class_embedder.embedding_table.weight")
        for key, value in copies.items():
            if key not in shared:
                shared[key] = value
            elif value.shape != shared[key].shape or not torch.equal(value, shared[key]):
                raise CheckpointError(
                    f"diffusers layout: block {i}'s copy of the conditioning embedder ({key}) differs from "
                    "block 0's; this model shares one embedder across blocks, so it cannot reproduce this checkpoint"
                )
        for kind in ("weight", "bias"):
            out[dst + f"attn.qkv.{kind}"] = torch.cat([take(src + f"attn1.to_{n}.{kind}") for n in "qkv"], dim=0)
            out[dst + f"attn.proj.{kind}"] = take(src + f"attn1.to_out.0.{kind}")
            out[dst + f"mlp.fc1.{kind}"] = take(src + f"ff.net.0.proj.{kind}")
            out[dst + f"mlp.fc2.{kind}"] = take(src + f"ff.net.2.{kind}")
            out[dst + f"adaLN_modulation.1.{kind}"] = take(src + f"norm1.linear.{kind}")
    if rest:
        raise CheckpointError(f"diffusers layout: unexpected keys {sorted(rest)[:5]}{' ...' if len(rest) > 5 else ''}")
    out.update(shared)
    return out


# ----------------------------------------------------------------------------- configs


_FIELD_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def check_config(config: DiTConfig, source: str = "config") -> DiTConfig:
    """Raise CheckpointError unless every field has the right type and the shape is buildable."""
    for f in dataclasses.fields(DiTConfig):
        value = getattr(config, f.name)
        types = _FIELD_TYPES[str(f.type)]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise CheckpointError(f"{source}: {f.name} must be {f.type}, got {value!r}")
    positive = ("input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads", "num_classes")
    problems = [f"{name} must be positive" for name in positive if getattr(config, name) <= 0]
    if config.mlp_ratio <= 0 or config.mlp_hidden <= 0:
        problems.append("mlp_ratio must be positive")
    if config.input_size % config.patch_size:
        problems.append(f"input_size {config.input_size} is not a multiple of patch_size {config.patch_size}")
    if config.num_heads > 0 and config.hidden_size % config.num_heads:
        problems.append(f"hidden_size {config.hidden_size} is not divisible by num_heads {config.num_heads}")
    if config.timestep_freq_shift not in (0, 1):
        problems.append("timestep_freq_shift must be 0 or 1")
    if not 0 <= config.class_dropout_prob < 1:
        problems.append("class_dropout_prob must be in [0, 1)")
    if problems:
        raise CheckpointError(f"{source}: {'; '.join(problems)}")
    return config


def config_from_json(data: object, source: str) -> DiTConfig:
    """A DiTConfig from the ``config`` object of a JSON file; every field is required but ``name``
    and those added since the format began (files written before them mean the original DiT)."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: the config must be a JSON object, got {type(data).__name__}")
    fields = {f.name for f in dataclasses.fields(DiTConfig)}
    missing = sorted(fields - {"name", "mlp_norm_eps"} - set(data))
    unknown = sorted(set(data) - fields)
    if missing or unknown:
        parts = ([f"missing fields {missing}"] if missing else []) + ([f"unknown fields {unknown}"] if unknown else [])
        raise CheckpointError(f"{source}: {'; '.join(parts)}")
    return check_config(DiTConfig(**data), source)


def _registry_size(size: str | DiTConfig) -> DiTConfig:
    if isinstance(size, DiTConfig):
        return check_config(size, "size")
    if size not in DiT_models:
        raise CheckpointError(f"unknown model size {size!r}; choose one of {sorted(DiT_models)}")
    return DiT_models[size]


def infer_config(
    state: dict,
    size: str | DiTConfig | None = None,
    name: str = "custom",
    *,
    input_size: int | None = None,
    num_heads: int | None = None,
) -> DiTConfig:
    """The DiTConfig of an official-layout state dict, or ``size`` (registry name or config) if given.

    hidden, patch, in_channels, depth, mlp_ratio, num_classes and learn_sigma are read from the
    tensor shapes; the image size from ``pos_embed`` (else ``input_size``, else the registry size
    with the same width and patch). Heads are not stored: ``num_heads``, else the registry size of
    the same width.
    """
    if size is not None:
        return _registry_size(size)

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise CheckpointError(f"official layout: missing key {key!r}")
        return tuple(state[key].shape)

    proj = shape("x_embedder.proj.weight")
    if len(proj) != 4 or proj[2] != proj[3]:
        raise CheckpointError(f"x_embedder.proj.weight has shape {proj}, expected (hidden, channels, patch, patch)")
    hidden, in_ch, patch, _ = proj
    depth = len(_block_indices(state, "blocks."))
    mlp_hidden = shape("blocks.0.mlp.fc1.weight")[0]
    out = shape("final_layer.linear.weight")[0]
    if out not in (patch * patch * in_ch, 2 * patch * patch * in_ch):
        raise CheckpointError(
            f"final_layer.linear.weight has {out} rows, expected {patch * patch * in_ch} or "
            f"{2 * patch * patch * in_ch} (patch {patch}, {in_ch} channels, with or without learned sigma)"
        )
    num_classes = shape("y_embedder.embedding_table.weight")[0] - 1  # the last row is the null class

    same_width = [c for c in DiT_models.values() if c.hidden_size == hidden]
    if "pos_embed" in state:
        pos = shape("pos_embed")
        grid = math.isqrt(pos[1]) if len(pos) == 3 else 0
        if len(pos) != 3 or grid * grid != pos[1]:
            raise CheckpointError(
                f"pos_embed has shape {pos}, expected (1, tokens, hidden) with a square grid of tokens"
            )
        input_size = grid * patch
    elif input_size is None:
        sizes = {c.input_size for c in same_width if c.patch_size == patch and c.in_channels == in_ch}
        if len(sizes) != 1:
            raise CheckpointError(
                f"cannot tell the image size of a checkpoint without pos_embed (hidden {hidden}, patch {patch}, "
                f"{in_ch} channels): pass --size with a registry name"
            )
        input_size = sizes.pop()
    if num_heads is None:
        heads = {c.num_heads for c in same_width}
        if len(heads) != 1:
            raise CheckpointError(
                f"cannot tell the number of attention heads for hidden size {hidden} "
                "(no registry size has that width): pass --size with a registry name such as DiT-S/2"
            )
        num_heads = heads.pop()
    return check_config(
        DiTConfig(
            input_size=input_size,
            patch_size=patch,
            in_channels=in_ch,
            hidden_size=hidden,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_hidden / hidden,
            num_classes=num_classes,
            learn_sigma=out == 2 * patch * patch * in_ch,
            name=name,
        ),
        name,
    )


def _diffusers_hints(path: Path) -> dict:
    """Image size and heads from the diffusers ``config.json`` that sits next to its weights, if any."""
    config = diffusers_config(path)
    hints = {"input_size": config.get("sample_size"), "num_heads": config.get("num_attention_heads")}
    return {k: v for k, v in hints.items() if isinstance(v, int) and not isinstance(v, bool)}


def diffusers_config(weights: Path) -> dict:
    """The diffusers ``config.json`` next to a weights file ({} if there is none)."""
    try:
        config = json.loads((weights.parent / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) and config.get("_class_name") in DIFFUSERS_CLASSES else {}


# ----------------------------------------------------------------------------- loading


def _check_state_dict(model: DiT, state: dict, source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        raise CheckpointError(f"{source}: {'; '.join(parts)} (is the model size right?)")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(state[key].shape)}, the model expects {tuple(value.shape)} "
                "(is the model size right?)"
            )
        if not state[key].is_floating_point():
            raise CheckpointError(f"{source}: {key} has dtype {state[key].dtype}, expected floating point")


def _load_state(config: DiTConfig, state: dict, source: str) -> DiT:
    model = DiT(config)
    _check_state_dict(model, state, source)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def _pos_embed(config: DiTConfig) -> torch.Tensor:
    grid = config.input_size // config.patch_size
    return torch.from_numpy(get_2d_sincos_pos_embed(config.hidden_size, grid)).float().unsqueeze(0)


def load_model(path: str | Path, size: str | DiTConfig | None = None) -> DiT:
    """Load any supported layout into an eval-mode DiT.

    ``size`` (a registry name such as ``DiT-XL/2``, or a DiTConfig) replaces the config inferred
    from an official or diffusers checkpoint; the project's own format always uses its JSON.
    """
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if path.suffix == ".safetensors" and path.with_suffix(".json").is_file():
        return _load_own(path)
    state, metadata = read_state(path)
    if metadata.get("format") == OWN_FORMAT:
        raise CheckpointError(f"{path}: a lazydit model whose config {path.with_suffix('.json')} is missing")
    hints: dict = {}
    layout = detect_layout(state)
    if layout == "diffusers":
        state = diffusers_to_official(state)
        hints = _diffusers_hints(path)
    config = infer_config(state, size, name=path.stem, **hints)
    if layout == "diffusers":
        # diffusers' timestep frequencies divide by half - 1, and its MLP LayerNorm uses norm_eps
        eps = float(diffusers_config(path).get("norm_eps", DIFFUSERS_NORM_EPS))
        config = dataclasses.replace(config, timestep_freq_shift=1, mlp_norm_eps=eps)
        # diffusers recomputes the fixed sin-cos table instead of storing it
        state.setdefault("pos_embed", _pos_embed(config))
    model = _load_state(config, state, str(path))
    # latents as their source samples them (a pipeline folder's scheduler may say otherwise)
    model.sampler = DIFFUSERS_SAMPLER if layout == "diffusers" else OFFICIAL_SAMPLER
    return model


def read_json(path: Path, what: str) -> object:
    """A JSON file a model is made of; errors name the file and what it should have been."""
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read {what}: {err}") from err
    except ValueError as err:
        raise CheckpointError(f"{path}: not valid JSON: {err}") from err


def _load_own(path: Path) -> DiT:
    meta_path = path.with_suffix(".json")
    meta = read_json(meta_path, "the model config")
    if not isinstance(meta, dict) or "config" not in meta:
        raise CheckpointError(f'{meta_path}: not a lazydit model config (no "config" object)')
    config = config_from_json(meta["config"], str(meta_path))
    state, _ = read_state(path)
    return _load_state(config, state, str(path))


# ----------------------------------------------------------------------------- misc


def default_model() -> DiT:
    """The embedded digits model."""
    path = DEFAULT_MODEL_DIR / f"{DEFAULT_MODEL_NAME}.safetensors"
    if not path.is_file():
        raise CheckpointError(
            f"the embedded default model is missing at {path}; reproduce it with the command in the README"
        )
    return load_model(path)


def weights_hash(model: DiT) -> str:
    """A content hash of the weights, to tie gates and plans to the model they were made for."""
    import hashlib

    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]

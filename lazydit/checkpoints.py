"""Loading and saving DiT weights.

Three layouts load into the same :class:`~lazydit.model.DiT`:

* the project's own: ``<name>.safetensors`` next to ``<name>.json`` (the :class:`DiTConfig`);
* an official facebookresearch/DiT ``.pt``: a flat (EMA) state dict, or a training checkpoint
  holding one under ``ema`` (or ``model``);
* a diffusers ``DiTTransformer2DModel`` state dict (``.safetensors`` or ``.bin``), whose q/k/v
  are split and whose timestep/class embedders are copied into every block.

The timestep embedding follows the original DiT (frequencies divided by ``half = 128``);
diffusers' ``Timesteps(downscale_freq_shift=1)`` divides by 127. A diffusers checkpoint is
loaded with ``timestep_freq_shift=1`` so it reproduces diffusers' outputs exactly.

Pickled files are opened with ``weights_only=True``: one that needs arbitrary code is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from .model import DiT, DiTConfig, DiT_models

DEFAULT_MODEL_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL_NAME = "dit-digits"


class CheckpointError(ValueError):
    """A file that is not a usable DiT checkpoint; the message says what is wrong."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: DiT, path: str | Path, dtype: torch.dtype = torch.float32, metadata: dict | None = None) -> Path:
    """Write ``path`` (.safetensors) and its JSON config beside it."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "lazydit", "dtype": str(dtype).removeprefix("torch.")}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={k: str(v) for k, v in meta.items()}))
    config = {"config": model.config.to_dict(), **(metadata or {})}
    atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
    return path


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


def _load_state(model: DiT, state: dict, source: str) -> DiT:
    _check_state_dict(model, state, source)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except __import__("pickle").UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused, the pickle needs more than tensors to load ({str(err).splitlines()[0]}); "
            "re-save it as a plain state dict"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {err}") from err
    if isinstance(obj, dict):
        for key in ("ema", "model", "state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors")
    return obj


def detect_layout(state: dict) -> str:
    if "x_embedder.proj.weight" in state:
        return "official"
    if "pos_embed.proj.weight" in state:
        return "diffusers"
    raise CheckpointError(
        "unrecognised key layout: expected official DiT keys (x_embedder.proj.weight ...) "
        "or diffusers DiTTransformer2DModel keys (pos_embed.proj.weight ...)"
    )


def infer_config(state: dict, name: str = "custom") -> DiTConfig:
    """Derive the DiT shape from an official-layout state dict (heads are not stored: use the registry)."""
    proj = state["x_embedder.proj.weight"]
    hidden, in_ch, patch, _ = proj.shape
    tokens = state["pos_embed"].shape[1]
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    out = state["final_layer.linear.weight"].shape[0] // (patch * patch)
    num_classes = state["y_embedder.embedding_table.weight"].shape[0] - 1
    mlp_hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    grid = int(round(tokens**0.5))
    heads = next((c.num_heads for c in DiT_models.values() if c.hidden_size == hidden), max(1, hidden // 64))
    return DiTConfig(
        input_size=grid * patch, patch_size=patch, in_channels=in_ch, hidden_size=hidden, depth=depth,
        num_heads=heads, mlp_ratio=mlp_hidden / hidden, num_classes=num_classes,
        learn_sigma=out == 2 * in_ch, name=name,
    )


def diffusers_to_official(state: dict) -> dict:
    """Rename a diffusers DiTTransformer2DModel state dict to the official layout."""
    out = {
        "x_embedder.proj.weight": state["pos_embed.proj.weight"],
        "x_embedder.proj.bias": state["pos_embed.proj.bias"],
        "final_layer.adaLN_modulation.1.weight": state["proj_out_1.weight"],
        "final_layer.adaLN_modulation.1.bias": state["proj_out_1.bias"],
        "final_layer.linear.weight": state["proj_out_2.weight"],
        "final_layer.linear.bias": state["proj_out_2.bias"],
    }
    emb = "transformer_blocks.0.norm1.emb."
    out["t_embedder.mlp.0.weight"] = state[emb + "timestep_embedder.linear_1.weight"]
    out["t_embedder.mlp.0.bias"] = state[emb + "timestep_embedder.linear_1.bias"]
    out["t_embedder.mlp.2.weight"] = state[emb + "timestep_embedder.linear_2.weight"]
    out["t_embedder.mlp.2.bias"] = state[emb + "timestep_embedder.linear_2.bias"]
    out["y_embedder.embedding_table.weight"] = state[emb + "class_embedder.embedding_table.weight"]
    depth = len({k.split(".")[1] for k in state if k.startswith("transformer_blocks.")})
    for i in range(depth):
        src, dst = f"transformer_blocks.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.qkv.{kind}"] = torch.cat(
                [state[src + f"attn1.to_{n}.{kind}"] for n in ("q", "k", "v")], dim=0
            )
            out[dst + f"attn.proj.{kind}"] = state[src + f"attn1.to_out.0.{kind}"]
            out[dst + f"mlp.fc1.{kind}"] = state[src + f"ff.net.0.proj.{kind}"]
            out[dst + f"mlp.fc2.{kind}"] = state[src + f"ff.net.2.{kind}"]
            out[dst + f"adaLN_modulation.1.{kind}"] = state[src + f"norm1.linear.{kind}"]
    return out


def _with_pos_embed(state: dict, config: DiTConfig) -> dict:
    """diffusers recomputes the fixed sin-cos position table; put it back as the official buffer."""
    if "pos_embed" not in state:
        state = dict(state)
        state["pos_embed"] = DiT(config).pos_embed.detach().clone()
    return state


def load_model(path: str | Path, size: str | None = None) -> DiT:
    """Load any supported layout. ``size`` (a registry name) overrides the inferred shape."""
    path = Path(path)
    if path.suffix == ".json" or (path.suffix == ".safetensors" and path.with_suffix(".json").is_file()):
        return _load_own(path.with_suffix(".safetensors"))
    state = _read_tensors(path)
    layout = detect_layout(state)
    try:
        if layout == "diffusers":
            state = diffusers_to_official(state)
    except KeyError as err:
        raise CheckpointError(f"{path}: diffusers layout with missing key {err}") from err
    try:
        config = DiT_models[size] if size else infer_config(_with_pos_embed(state, _guess_config(state)), path.stem)
    except KeyError as err:
        if size:
            raise CheckpointError(f"unknown model size {size!r}; choose one of {sorted(DiT_models)}") from err
        raise CheckpointError(f"{path}: official layout with missing key {err}") from err
    if layout == "diffusers":
        config = DiTConfig.from_dict({**config.to_dict(), "timestep_freq_shift": 1})
        state = _with_pos_embed(state, config)
    return _load_state(DiT(config), state, str(path))


def _guess_config(state: dict) -> DiTConfig:
    """Enough of a config to rebuild a missing pos_embed: tokens follow from the patch grid."""
    if "pos_embed" in state:
        return DiTConfig()
    hidden, in_ch, patch, _ = state["x_embedder.proj.weight"].shape
    for config in DiT_models.values():
        if config.hidden_size == hidden and config.patch_size == patch and config.in_channels == in_ch:
            return config
    raise CheckpointError(
        f"cannot infer the image size of a diffusers checkpoint with hidden {hidden}, patch {patch}; pass --size"
    )


def _load_own(path: Path) -> DiT:
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
        config = DiTConfig.from_dict(meta["config"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{meta_path}: not a lazydit model config ({err})") from err
    return _load_state(DiT(config), _read_tensors(path), str(path))


def default_model_path() -> Path:
    return DEFAULT_MODEL_DIR / f"{DEFAULT_MODEL_NAME}.safetensors"


def resolve_model(spec: str | None) -> DiT:
    """``default`` (or None) is the embedded digits model; anything else is a checkpoint path."""
    if spec in (None, "default"):
        path = default_model_path()
        if not path.is_file():
            raise CheckpointError(
                f"the embedded default model is missing at {path}; reproduce it with the command in the README"
            )
        return load_model(path)
    return load_model(spec)


def weights_hash(model: DiT) -> str:
    """A content hash of the weights, to tie gates and plans to the model they were made for."""
    import hashlib

    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]

"""Generating labelled sample sets and writing them as ``samples.npz`` plus a PNG grid."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .data import to_uint8
from .diffusion import initial_noise
from .executor import Decider, sample
from .files import atomic_write
from .model import DiT
from .options import opt
from .plans import Plan


@dataclass
class SamplingConfig:
    """How a sample set is drawn: the same settings for ``lazydit sample`` and ``lazydit eval``."""

    steps: int | None = opt(None, "DDIM steps (default: the plan's, else 50)")
    cfg_scale: float = opt(1.5, "classifier-free guidance scale")
    per_class: int = opt(10, "samples per class")
    seed: int = opt(0, "noise seed; sample i's noise depends only on (seed, i)")
    plan: str | None = opt(None, "a skip plan JSON (from `lazydit plan`); default: no skipping")
    dynamic: str | None = opt(
        None, "per-sample lazy gating with a gate file ('default': the shipped gates for --steps)", const="default"
    )
    threshold: float = opt(0.5, "with --dynamic: compute when score >= this")
    dynamic_forecast: bool = opt(False, "with --dynamic: forecast skipped modules instead of reusing them")


@dataclass
class EvalConfig(SamplingConfig):
    """``lazydit eval`` draws more per class: Frechet distances need the samples."""

    per_class: int = opt(100, "samples per class")


def class_labels(num_classes: int, per_class: int) -> torch.Tensor:
    return torch.arange(num_classes).repeat_interleave(per_class)


def generate(
    model: DiT,
    plan: Plan,
    per_class: int,
    seed: int = 0,
    cfg_scale: float = 1.5,
    batch_size: int = 250,
    decider_factory=None,
    dynamic_forecast: bool = False,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Samples (float, [-1, 1]) for ``per_class`` of every class; sample i's noise depends only on
    (seed, i), so two plans or step counts can be compared sample by sample. Returns images,
    labels and the eager wall time per image in seconds."""
    arch = model.config
    labels = class_labels(arch.num_classes, per_class)
    noise = initial_noise(len(labels), (arch.in_channels, arch.input_size, arch.input_size), seed)
    out = []
    elapsed = 0.0
    for i in tqdm(
        range(0, len(labels), batch_size),
        desc=f"sample {plan.policy} ddim{plan.steps}",
        disable=not progress,
        leave=False,
    ):
        decider: Decider | None = decider_factory() if decider_factory else None
        start = time.perf_counter()
        out.append(
            sample(
                model,
                noise[i : i + batch_size],
                labels[i : i + batch_size],
                plan,
                cfg_scale,
                decider=decider,
                dynamic_forecast=dynamic_forecast,
            )
        )
        elapsed += time.perf_counter() - start
    return torch.cat(out), labels, elapsed / len(labels)


def grid_png(images: np.ndarray, labels: np.ndarray, scale: int = 4) -> bytes:
    """One row per class, samples left to right, each pixel scaled up ``scale`` times."""
    return png_bytes(grid_image(images, labels, scale))


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def grid_image(images: np.ndarray, labels: np.ndarray, scale: int = 4) -> np.ndarray:
    """The grid of :func:`grid_png` as a uint8 array."""
    from PIL import Image

    classes = sorted(set(labels.tolist()))
    per_row = max(int((labels == c).sum()) for c in classes)
    h, w = images.shape[1:3]
    pad = 1
    rgb = images.ndim == 4
    canvas = np.zeros(((h + pad) * len(classes) + pad, (w + pad) * per_row + pad) + ((3,) if rgb else ()), np.uint8)
    for r, c in enumerate(classes):
        for j, img in enumerate(images[labels == c]):
            y0, x0 = pad + r * (h + pad), pad + j * (w + pad)
            canvas[y0 : y0 + h, x0 : x0 + w] = img
    im = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    return np.asarray(im)


def write_samples(out_dir: str | Path, images: np.ndarray, labels: np.ndarray, grid_per_class: int = 16) -> Path:
    """``samples.npz`` (images uint8, labels int64) and ``grid.png`` (at most ``grid_per_class`` per row)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=images, labels=labels.astype(np.int64))

    atomic_write(out_dir / "samples.npz", write_npz)
    keep = np.concatenate([np.flatnonzero(labels == c)[:grid_per_class] for c in sorted(set(labels.tolist()))])
    png = grid_png(images[keep], labels[keep])
    atomic_write(out_dir / "grid.png", lambda tmp: tmp.write_bytes(png))
    return out_dir


def read_samples(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    if path.is_dir():
        path = path / "samples.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; write samples with `lazydit sample --out DIR`")
    with np.load(path) as data:
        if "images" not in data or "labels" not in data:
            raise ValueError(f"{path} lacks 'images' and 'labels' arrays")
        return data["images"], data["labels"]


def save_generated(out_dir: str | Path, images: torch.Tensor, labels: torch.Tensor) -> Path:
    return write_samples(out_dir, to_uint8(images), labels.numpy())


def sample_bundle(
    bundle_dir: str | Path, backend: str, per_class: int, seed: int = 0, cfg_scale: float = 1.5, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, float]:
    """The same sample set as :func:`generate` (same noise per index), produced by a bundle."""
    from .runtime.backends import create_backend
    from .runtime.bundle import Bundle
    from .runtime.loop import run_bundle

    bundle = Bundle.load(bundle_dir)
    runner = create_backend(backend, bundle)
    m = bundle.manifest["model"]
    shape = (m["image"]["channels"], m["image"]["height"], m["image"]["width"])
    labels = class_labels(m["num_classes"], per_class).numpy()
    noise = initial_noise(len(labels), shape, seed).numpy()
    images, elapsed = [], 0.0
    for i in tqdm(range(len(labels)), desc=f"sample {backend}", disable=not progress, leave=False):
        state = {
            "x": noise[i : i + 1],
            "y": labels[i : i + 1].astype(np.int64),
            "cfg_scale": np.array([cfg_scale], np.float32),
        }
        result = run_bundle(runner, state)
        elapsed += result.total_seconds
        images.append(result.image[0])
    return np.stack(images), labels, elapsed / len(labels)

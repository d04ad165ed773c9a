"""Generating labelled sample sets and writing them as ``samples.npz`` plus a PNG grid."""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .data import to_uint8
from .diffusion import initial_noise
from .distributed import DEVICES
from .executor import Decider, sample
from .files import atomic_write
from .model import DiT
from .options import opt
from .pipelines import LatentDecoder, LoadedModel
from .plans import MAX_ORDER, Plan


@dataclass
class SamplingConfig:
    """How a sample set is drawn: the same settings for ``lazydit sample`` and ``lazydit eval``."""

    steps: int | None = opt(None, "DDIM steps (default: the plan's, else 50)")
    cfg_scale: float = opt(1.5, "classifier-free guidance scale")
    per_class: int = opt(10, "samples per class")
    classes: tuple[int, ...] = opt((), "the classes to draw, e.g. 207,360,387 (default: every class)")
    seed: int = opt(0, "noise seed; sample i's noise depends only on (seed, i)")
    plan: str | None = opt(None, "a skip plan JSON (from `lazydit plan`); default: no skipping")
    dynamic: str | None = opt(
        None, "per-sample lazy gating with a gate file ('default': the shipped gates for --steps)", const="default"
    )
    threshold: float = opt(0.5, "with --dynamic: compute when score >= this")
    dynamic_forecast: bool = opt(False, "with --dynamic: forecast skipped modules instead of reusing them")
    dynamic_forecast_order: int = opt(1, "with --dynamic-forecast: the forecast order, 1-3")
    num_samples: int | None = opt(
        None,
        "draw this many samples instead of --per-class each, sample i of class i mod the number of classes "
        "(e.g. 50000 for FID; under torchrun the batches are shared out between the processes)",
    )
    batch_size: int = opt(250, "samples per batch: the unit of work a process takes (the same in every run)")
    device: str = opt("auto", "eager sampling on cpu, cuda or mps; auto: the best available", choices=DEVICES)

    def __post_init__(self) -> None:
        if not 1 <= self.dynamic_forecast_order <= MAX_ORDER:
            raise ValueError(f"--dynamic-forecast-order {self.dynamic_forecast_order} is outside 1-{MAX_ORDER}")
        if self.num_samples is not None and self.num_samples < 1:
            raise ValueError(f"--num-samples must be at least 1, got {self.num_samples}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")

    @property
    def forecast_order(self) -> int:
        """The executor's forecast order of dynamically skipped modules (0: they are reused)."""
        return self.dynamic_forecast_order if self.dynamic_forecast else 0

    def labels(self, num_classes: int) -> torch.Tensor:
        """``per_class`` samples of every asked class, class by class (sample i's noise is fixed by i);
        with ``num_samples``, that many, cycling through the classes."""
        if self.per_class < 1:
            raise ValueError(f"--per-class must be at least 1, got {self.per_class}")
        wrong = [c for c in self.classes if not 0 <= c < num_classes]
        if wrong:
            raise ValueError(f"classes {wrong} are not classes of this model (0..{num_classes - 1})")
        chosen = torch.tensor(self.classes or range(num_classes), dtype=torch.long)
        if self.num_samples is not None:
            return chosen[torch.arange(self.num_samples) % len(chosen)]
        return chosen.repeat_interleave(self.per_class)


@dataclass
class EvalConfig(SamplingConfig):
    """``lazydit eval`` draws more per class: Frechet distances need the samples."""

    per_class: int = opt(100, "samples per class")


def class_labels(num_classes: int, per_class: int) -> torch.Tensor:
    return torch.arange(num_classes).repeat_interleave(per_class)


def generate(
    model: DiT,
    plan: Plan,
    labels: torch.Tensor,
    seed: int = 0,
    cfg_scale: float = 1.5,
    batch_size: int = 250,
    decider_factory=None,
    dynamic_forecast: int = 0,
    progress: bool = True,
    batches: range | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Samples (float, as the sampler leaves them) for ``labels``; sample i's noise depends only on
    (seed, i), so two plans or step counts can be compared sample by sample. Returns samples,
    labels and the eager wall time per image in seconds. ``dynamic_forecast``: the forecast order
    of the modules a decider skips (0 reuses them). ``batches``: only these batches of
    ``batch_size`` samples (one process's share); every batch is the same whoever draws it."""
    arch = model.config
    device = next(model.parameters()).device
    if batches is None:
        batches = range(math.ceil(len(labels) / batch_size))
    out, kept = [], []
    elapsed = 0.0
    for j in tqdm(batches, desc=f"sample {plan.policy} ddim{plan.steps}", disable=not progress, leave=False):
        first = j * batch_size
        chunk = labels[first : first + batch_size]
        noise = initial_noise(len(chunk), (arch.in_channels, arch.input_size, arch.input_size), seed, first)
        decider: Decider | None = decider_factory() if decider_factory else None
        start = time.perf_counter()
        kept.append(chunk)
        out.append(
            sample(
                model,
                noise.to(device),
                chunk.to(device),
                plan,
                cfg_scale,
                decider=decider,
                dynamic_forecast=dynamic_forecast,
            )
        )
        elapsed += time.perf_counter() - start
    if not out:
        empty = torch.empty((0, arch.in_channels, arch.input_size, arch.input_size))
        return empty, labels[:0], 0.0
    done = torch.cat(kept)
    return torch.cat(out).cpu(), done, elapsed / len(done)


def check_showable(loaded: LoadedModel) -> None:
    """Refuse, before any sampling, a model whose samples are not pictures (a latent without its VAE)."""
    channels = loaded.dit.config.in_channels
    if loaded.vae is None and channels not in (1, 3):
        raise ValueError(
            f"this model samples {channels}-channel latents and has no VAE to turn them into pictures; pass a "
            "diffusers pipeline folder (with vae/) as --model"
        )


@torch.no_grad()
def to_pictures(loaded: LoadedModel, samples: torch.Tensor, batch_size: int = 8) -> np.ndarray:
    """uint8 pictures of final samples: [N, H, W] grey or [N, H, W, 3] RGB, decoded by the VAE of a
    latent model exactly as its bundle's ``decode`` method does."""
    if loaded.vae is None:
        return to_uint8(samples)
    decode = LatentDecoder(loaded.vae)
    device = next(loaded.vae.parameters()).device
    pictures = [
        decode(samples[i : i + batch_size].to(device)).cpu().numpy() for i in range(0, len(samples), batch_size)
    ]
    return np.concatenate(pictures) if pictures else np.zeros((0, 0, 0, 3), np.uint8)


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


def adm_arrays(images: np.ndarray) -> np.ndarray:
    """The layout the ADM / guided-diffusion FID evaluator reads: N x H x W x 3 uint8 (grey repeated)."""
    return np.repeat(images[..., None], 3, axis=-1) if images.ndim == 3 else images


def write_adm(out_dir: str | Path, images: np.ndarray) -> Path:
    """``samples_NxHxWx3.npz`` with ``arr_0``, as the DiT sampling scripts name it."""
    arr = adm_arrays(images)
    path = Path(out_dir) / f"samples_{'x'.join(map(str, arr.shape))}.npz"

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, arr_0=arr)

    atomic_write(path, write)
    return path


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


def sample_bundle(
    bundle_dir: str | Path, backend: str, config: SamplingConfig, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, float]:
    """The same sample set as :func:`generate` (same noise per index), produced by a bundle."""
    from .runtime.backends import create_backend
    from .runtime.bundle import Bundle
    from .runtime.loop import run_bundle

    bundle = Bundle.load(bundle_dir)
    runner = create_backend(backend, bundle)
    labels = config.labels(bundle.manifest["model"]["num_classes"]).numpy()
    noise = initial_noise(len(labels), tuple(bundle.manifest["slots"]["x"]["shape"][1:]), config.seed).numpy()
    cfg_scale = config.cfg_scale
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

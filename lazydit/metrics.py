"""Quality metrics on digits, measured with classifiers the project trains itself.

Two feature extractors (a small CNN and an MLP), because one small extractor can be blind to
what another sees. Class accuracy uses the CNN. The Frechet distance is computed on each
extractor's penultimate features between generated samples and held-out real digits; the floor
is the same distance between two sets of real digits (train split vs test split).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import digits
from .files import atomic_write

CLASSIFIER_DIR = Path(__file__).parent / "weights"
EXTRACTORS = ("cnn", "mlp")


class DigitCNN(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 16, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DigitMLP(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU())
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


ARCHITECTURES = {"cnn": DigitCNN, "mlp": DigitMLP}


def train_classifier(kind: str, epochs: int = 60, seed: int = 0) -> tuple[nn.Module, float]:
    """Train on the digits train split with one-pixel shifts; returns the model and test accuracy."""
    torch.manual_seed(seed)
    train, test = digits("train"), digits("test")
    model = ARCHITECTURES[kind]()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=gen)
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            x = train.images[idx]
            shift = torch.randint(-1, 2, (2,), generator=gen)
            x = torch.roll(x, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(x), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(test.images).argmax(1) == test.labels).float().mean().item()
    return model, acc


def save_classifiers(out_dir: Path = CLASSIFIER_DIR, seed: int = 0) -> dict[str, float]:
    from safetensors.torch import save_file

    accs = {}
    for kind in EXTRACTORS:
        model, acc = train_classifier(kind, seed=seed)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        atomic_write(out_dir / f"classifier-{kind}.safetensors", lambda tmp, s=state: save_file(s, str(tmp)))
        accs[kind] = acc
    atomic_write(
        out_dir / "classifiers.json",
        lambda tmp: tmp.write_text(json.dumps({"seed": seed, "test_accuracy": accs}, indent=2) + "\n"),
    )
    return accs


_LOADED: dict[str, nn.Module] = {}


def load_classifier(kind: str) -> nn.Module:
    if kind not in _LOADED:
        from safetensors.torch import load_file

        path = CLASSIFIER_DIR / f"classifier-{kind}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; rebuild it with `lazydit train-classifiers`")
        model = ARCHITECTURES[kind]()
        model.load_state_dict(load_file(str(path)))
        _LOADED[kind] = model.eval()
    return _LOADED[kind]


@torch.no_grad()
def features(images: torch.Tensor, kind: str) -> np.ndarray:
    return load_classifier(kind).features(images).double().numpy()


@torch.no_grad()
def class_accuracy(images: torch.Tensor, labels: torch.Tensor) -> float:
    pred = load_classifier("cnn")(images).argmax(1)
    return float((pred == labels).float().mean())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = _sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        eps = np.eye(s1.shape[0]) * 1e-6
        covmean = _sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _sqrtm(m: np.ndarray) -> np.ndarray:
    """Matrix square root; ReLU features leave some dimensions constant, so a singular input is
    expected (the caller regularises when the result is not finite) and not warned about."""
    import warnings

    from scipy import linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm(m)


def psnr(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, data_range: float = 2.0) -> float:
    """PSNR in dB between two images (or batches, averaged per image), for [-1, 1] data by default."""
    a = torch.as_tensor(np.asarray(a), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(b), dtype=torch.float64)
    mse = ((a - b) ** 2).reshape(a.shape[0], -1).mean(1) if a.ndim > 3 else ((a - b) ** 2).mean().reshape(1)
    values = 10 * torch.log10(data_range**2 / mse.clamp_min(1e-20))
    return float(values.mean())


@dataclass
class Reference:
    """Real-digit features computed once per process."""

    test: dict[str, np.ndarray]
    floor: dict[str, float]


_REFERENCE: Reference | None = None


def reference() -> Reference:
    global _REFERENCE
    if _REFERENCE is None:
        train, test = digits("train"), digits("test")
        test_feats = {k: features(test.images, k) for k in EXTRACTORS}
        floor = {k: frechet_distance(features(train.images, k), test_feats[k]) for k in EXTRACTORS}
        _REFERENCE = Reference(test=test_feats, floor=floor)
    return _REFERENCE


def evaluate(images: torch.Tensor, labels: torch.Tensor, reference_images: torch.Tensor | None = None) -> dict:
    """Accuracy, FD per extractor (absolute and as a multiple of the real-vs-real floor), PSNR.
    The classifiers know 8x8 grey digits only: other pictures get PSNR against the reference."""
    result: dict = {"samples": int(images.shape[0])}
    if reference_images is not None:
        result["psnr_db"] = psnr(images, reference_images)
    if tuple(images.shape[1:]) != (1, 8, 8):
        if reference_images is None:
            raise ValueError(
                f"class accuracy and Frechet distance use the digit classifiers (8x8 grey); these samples are "
                f"{tuple(images.shape[1:])}: pass --reference (samples from the same noise) for PSNR"
            )
        return result
    ref = reference()
    result["class_accuracy"] = class_accuracy(images, labels)
    for kind in EXTRACTORS:
        fd = frechet_distance(features(images, kind), ref.test[kind])
        result[f"fd_{kind}"] = fd
        result[f"fd_{kind}_floor"] = ref.floor[kind]
        result[f"fd_{kind}_ratio"] = fd / ref.floor[kind]
    return result

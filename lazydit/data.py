"""Datasets: scikit-learn's handwritten digits (shipped with the package, no download) and a
folder of images with one subfolder per class. Images come out as float tensors in [-1, 1]."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


@dataclass
class ImageDataset:
    images: torch.Tensor  # N x C x H x W, float32 in [-1, 1]
    labels: torch.Tensor  # N, int64
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return self.images.shape[0]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] N x C x H x W -> uint8 N x H x W (grey) or N x H x W x 3."""
    arr = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    return arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)


def from_uint8(images: np.ndarray) -> torch.Tensor:
    arr = torch.from_numpy(np.asarray(images)).float() / 127.5 - 1
    return arr.unsqueeze(1) if arr.ndim == 3 else arr.permute(0, 3, 1, 2)


def digits(split: str = "train") -> ImageDataset:
    """The 1797 8x8 digits, split once with a fixed seed (stratified by class)."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    images = raw.images.astype(np.float32) / 16.0 * 2 - 1
    labels = raw.target.astype(np.int64)
    idx = np.arange(len(labels))
    if split != "all":
        train_idx, test_idx = train_test_split(
            idx, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=labels
        )
        idx = np.sort(train_idx if split == "train" else test_idx)
    return ImageDataset(
        images=torch.from_numpy(images[idx]).unsqueeze(1),
        labels=torch.from_numpy(labels[idx]),
        class_names=[str(i) for i in range(10)],
    )


def image_folder(root: str | Path, size: int, channels: int = 1) -> ImageDataset:
    """``root/<class>/<image>``; classes are the sorted subfolder names."""
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{root} has no class subfolders; put images in {root}/<class name>/")
    mode = "L" if channels == 1 else "RGB"
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            with Image.open(path) as im:
                im = im.convert(mode).resize((size, size), Image.BICUBIC)
                arr = np.asarray(im, dtype=np.uint8)
            images.append(arr)
            labels.append(label)
    if not images:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
    return ImageDataset(images=from_uint8(np.stack(images)), labels=torch.tensor(labels), class_names=classes)


def load_dataset(spec: str, size: int | None = None, channels: int = 1, split: str = "train") -> ImageDataset:
    """``digits`` or a path to an image folder."""
    if spec == "digits":
        return digits(split)
    if size is None:
        raise ValueError("an image folder dataset needs an image size (--image-size)")
    return image_folder(spec, size, channels)

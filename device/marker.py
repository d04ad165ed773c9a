"""The marker that tells a complete userland from a partial one.

The builder (``userland.py``) writes it last, once the root is in place; the runner (``guest.py``) and the
instruction counter refuse a root without it. Both sides read it here, so neither imports the other for it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import DeviceError

__all__ = ["MARKER", "is_prepared", "require_prepared", "userland_info"]

MARKER = ".lazydit-device.json"


def userland_info(root: str | os.PathLike) -> dict:
    """The marker of a prepared userland (what it holds, sizes, timings); ``{}`` if unprepared."""
    try:
        return json.loads((Path(root) / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def is_prepared(root: str | os.PathLike) -> bool:
    """Whether ``root`` is a finished userland: an interrupted prepare leaves no marker."""
    return bool(userland_info(root))


def require_prepared(root: str | os.PathLike) -> Path:
    """``root`` as a Path, or a ``DeviceError`` naming the command that builds it."""
    root = Path(root)
    if not is_prepared(root):
        raise DeviceError(f"{root} is not a prepared device userland; run `lazydit device prepare` first")
    return root

"""Phone classes approximated on the desktop, for ``lazydit bench --profile``.

``PROFILES`` model thread count and CPU affinity only: clock speed, core microarchitecture, caches, memory
bandwidth and thermal throttling are not modelled, so they rank configurations rather than predict phone
latency.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import DeviceError

__all__ = ["PROFILES", "DeviceProfile", "apply_profile", "profile"]


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    threads: int
    description: str


PROFILES: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        DeviceProfile(
            "flagship-2024",
            4,
            "2024 flagship (Snapdragon 8 Gen 3, Dimensity 9300, A17 Pro class): inference on its 4 big/prime cores",
        ),
        DeviceProfile(
            "midrange",
            2,
            "mid-range phone (Snapdragon 7-series, Dimensity 7000 class): 2 big cores worth of threads",
        ),
        DeviceProfile(
            "budget",
            1,
            "budget phone (Helio G / Snapdragon 4-series class): one core, the others busy or little",
        ),
    )
}


def apply_profile(name: str, pid: int = 0) -> int:
    """Pin ``pid`` (0: this process) for the profile and return the thread count to use.

    An approximation: only the thread count and CPU affinity are modelled. The process is
    pinned to the first ``threads`` CPUs it may use when the host has that many; otherwise
    its affinity is left alone and the count is capped at the CPUs available, since
    oversubscribed threads measure the host's scheduler, not the phone.
    """
    try:
        prof = PROFILES[name]
    except KeyError:
        raise DeviceError(f"unknown device profile {name!r}; known: {', '.join(PROFILES)}") from None
    if not hasattr(os, "sched_getaffinity"):
        return max(1, min(prof.threads, os.cpu_count() or 1))
    allowed = sorted(os.sched_getaffinity(pid))
    if len(allowed) >= prof.threads:
        os.sched_setaffinity(pid, allowed[: prof.threads])
        return prof.threads
    return max(1, len(allowed))


@contextlib.contextmanager
def profile(name: str) -> Iterator[int]:
    """``with profile("midrange") as threads:`` applies the profile and restores the affinity after."""
    saved = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        yield apply_profile(name)
    finally:
        if saved is not None:
            os.sched_setaffinity(0, saved)

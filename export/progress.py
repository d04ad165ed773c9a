"""Progress lines for long exports, stamped with seconds since the export began."""

from __future__ import annotations

import time


def printer(enabled: bool, start: float | None = None):
    """Progress lines stamped with the seconds since ``start`` (perf_counter is system-wide on
    the platforms we export on, so a worker's lines share the parent's clock)."""
    start = time.perf_counter() if start is None else start

    def say(msg: str) -> None:
        if enabled:
            print(f"[{time.perf_counter() - start:6.1f}s] {msg}", flush=True)

    say.start = start if enabled else None
    return say

"""What every device module tells the user: the error type, output tails for its messages, progress lines.

Kept apart so the builder, the runner, the counter and the profiles share them without importing each other.
"""

from __future__ import annotations

import sys

__all__ = ["DeviceError", "say", "tail"]


class DeviceError(RuntimeError):
    """The emulated device cannot be prepared or run; the message says how to fix it."""


def say(progress: bool, msg: str) -> None:
    """A progress line on stderr (stdout may carry a JSON report)."""
    if progress:
        print(f"[device] {msg}", file=sys.stderr, flush=True)


def tail(text: str | bytes | None, lines: int = 15) -> str:
    """The last lines of a tool's output: enough to show why it failed without flooding the message."""
    if not text:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join(text.strip().splitlines()[-lines:])

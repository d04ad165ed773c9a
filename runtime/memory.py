"""Peak resident memory of running a bundle, measured in a fresh process per bundle (a process's
peak is for its whole life, so two bundles timed in one process cannot be told apart).

The child imports the backend's libraries, notes its resident set, loads the bundle, runs one
image and reports its peak: ``peak_rss_mb`` is what the process reached, ``bundle_rss_mb`` the
part above the libraries (the bundle's weights, the backend's buffers and the run itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .bundle import BundleError


def _rss_mb() -> float:
    """The current resident set (Linux /proc); elsewhere the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return _peak_mb()


def _peak_mb() -> float:
    """This process's peak resident set. Linux: VmHWM, the high-water mark of the process's own
    memory map (ru_maxrss would carry over the parent's peak across fork and exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _measure(root: str, backend: str, threads: int | None) -> dict:
    from .backends import create_backend, executorch_bindings
    from .bundle import Bundle
    from .loop import run_bundle

    if backend == "onnxruntime":
        import onnxruntime  # noqa: F401
    elif backend == "executorch":
        executorch_bindings()
    bundle = Bundle.load(root)
    before = _rss_mb()
    runner = create_backend(backend, bundle, threads)
    loaded = _rss_mb()
    run_bundle(runner, bundle.initial_state())
    peak = _peak_mb()
    return {
        "peak_rss_mb": peak,
        "bundle_rss_mb": peak - before,
        "loaded_rss_mb": loaded - before,
        "libraries_rss_mb": before,
    }


def peak_memory(root: str, backend: str, threads: int | None = None) -> dict:
    """Run ``root`` once in a child process and return its memory figures (MiB)."""
    args = [sys.executable, "-m", __name__, str(root), backend, str(threads or 0)]
    done = subprocess.run(args, check=False, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BundleError(f"measuring the memory of {root} on {backend} failed: {tail}")
    return json.loads(lines[-1])


if __name__ == "__main__":
    root, backend, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]) or None
    print(json.dumps(_measure(root, backend, threads)))

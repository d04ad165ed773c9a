"""The native runner (``runtime/native``, C++ on ExecuTorch's Module API) driven from Python:
``lazydit bench --backend executorch-native`` and ``lazydit verify --backend executorch-native``
run the whole loop in that program and read back its JSON report, which has the fields of
``bench`` and ``verify`` here. The program is built on first use for the host (and for aarch64 by
the emulated device) into the phone toolchain cache, one build per source digest."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from .bundle import BundleError

SOURCES = Path(__file__).with_name("native")
BACKEND = "executorch-native"


class NativeRunnerError(ValueError):
    """The native runner could not be built or did not answer; the message says why."""


def cache_dir() -> Path:
    return Path(os.environ.get("LAZYDIT_MOBILE_CACHE") or Path.home() / ".cache" / "lazydit-mobile")


def _digest() -> str:
    h = hashlib.sha256()
    for path in sorted(SOURCES.iterdir()):
        if path.suffix in {".cpp", ".hpp", ".sh"}:
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:12]


def runner(arch: str | None = None) -> Path:
    """``lazydit-native`` built for ``arch`` (default: this machine's), building it if needed."""
    arch = arch or platform.machine()
    out = cache_dir() / "native" / f"{arch}-{_digest()}"
    binary = out / "lazydit-native"
    if binary.is_file():
        return binary
    print(f"building the native runner for {arch} into {out} (once)", file=sys.stderr)
    env = dict(os.environ, PYTHON=sys.executable)
    out.parent.mkdir(parents=True, exist_ok=True)  # a new cache has no native/ folder yet
    done = subprocess.run(
        ["bash", str(SOURCES / "build.sh"), arch, str(out)], check=False, capture_output=True, text=True, env=env
    )
    if done.returncode != 0 or not binary.is_file():
        raise NativeRunnerError(f"building the native runner failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return binary


def run_native(args: list[str], prefix: list[str] | None = None, binary: Path | None = None) -> dict:
    """Run ``lazydit-native ARGS`` (under ``prefix``, e.g. qemu) and return its JSON report.
    Exit 2 is a refused bundle (BundleError with the runner's message); 1 a failed golden check."""
    binary = binary or runner()
    done = subprocess.run([*(prefix or []), str(binary), *args], check=False, capture_output=True, text=True)
    errors = [line[len("error: ") :] for line in done.stderr.splitlines() if line.startswith("error: ")]
    if done.returncode == 2:
        raise BundleError(errors[0] if errors else f"the native runner refused the bundle: {done.stderr[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode not in (0, 1) or not lines:
        raise NativeRunnerError(f"the native runner failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def _threads(threads: int | None) -> list[str]:
    return ["--threads", str(threads)] if threads else []


def native_verify(bundle: str, threads: int | None = None, prefix: list[str] | None = None, binary=None) -> dict:
    return run_native(["verify", "--bundle", str(bundle), *_threads(threads)], prefix, binary)


def native_bench(
    bundle: str,
    baseline: str | None,
    warmup: int,
    runs: int,
    threads: int | None,
    prefix: list[str] | None = None,
    binary: Path | None = None,
) -> dict:
    args = ["bench", "--bundle", str(bundle), "--warmup", str(warmup), "--runs", str(runs), *_threads(threads)]
    if baseline:
        args += ["--baseline", str(baseline)]
    return run_native(args, prefix, binary)

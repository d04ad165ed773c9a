"""The native runner on the emulated ARM64 phone: the aarch64 build of ``runtime/native`` (the C++
loop on ExecuTorch's Module API that an Android app ships), run under qemu-user against Debian's
aarch64 C library, with no Python and no userland in the guest, the way phone teams push a native
benchmark binary with adb. Golden parity, the lazy/full latency ratio and guest instruction counts
per image, in the report ``run_on_device`` writes for the Python runtime."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..runtime.bundle import Bundle
from ..runtime.native_runner import cache_dir, native_bench, native_verify, runner
from .count import count_native, instruction_counting_status
from .errors import DeviceError
from .guest import DEFAULT_CPU, QEMU_DYNAMIC, find_qemu

__all__ = ["SYSROOT", "run_native_on_device"]

# Debian's aarch64 C and C++ libraries (libc6-arm64-cross, libstdc++6-arm64-cross), which
# g++-aarch64-linux-gnu brings with it.
SYSROOT = Path("/usr/aarch64-linux-gnu")


def _qemu_prefix() -> list[str]:
    if not (SYSROOT / "lib" / "ld-linux-aarch64.so.1").is_file():
        raise DeviceError(f"no aarch64 C library under {SYSROOT}: apt-get install g++-aarch64-linux-gnu")
    # qemu-user's dynamic binary (mobile/toolchains.sh native installs it; it also counts
    # instructions), else the static one the userland uses
    qemu = shutil.which(QEMU_DYNAMIC) or find_qemu(install=True)
    return [str(qemu), "-L", str(SYSROOT), "-cpu", DEFAULT_CPU]


def _instructions_per_image(program: Path, bundle: str) -> dict:
    """(load + 2 images) - (load + 1 image) on one thread, so loading and start-up cancel."""
    counts = {}
    for runs in (1, 2):
        args = ["bench", "--bundle", bundle, "--warmup", "0", "--runs", str(runs), "--threads", "1"]
        counts[runs] = count_native(program, args, SYSROOT, cache_dir() / "plugins", DEFAULT_CPU).instructions
    per_image = counts[2] - counts[1]
    steps = len(Bundle.load(bundle, verify_hashes=False).steps)
    return {"instructions_per_image": per_image, "instructions_per_step": per_image / steps}


def run_native_on_device(bundle: str, baseline: str | None = None, runs: int = 3, count: bool = False) -> dict:
    """Parity, timing (against ``baseline`` if given) and optionally instruction counts, as one report."""
    program = runner("aarch64")
    prefix = _qemu_prefix()
    bundle = str(Path(bundle).resolve())
    report: dict = {"arch": "arm64", "backend": "executorch-native", "bundle": bundle}
    report["parity"] = native_verify(bundle, prefix=prefix, binary=program)
    if baseline:
        baseline = str(Path(baseline).resolve())
        report["baseline_parity"] = native_verify(baseline, prefix=prefix, binary=program)
    report["bench"] = native_bench(bundle, baseline, 1, runs, None, prefix=prefix, binary=program)
    if baseline:
        report["lazy_full_ratio"] = 1 / report["bench"]["comparison"]["measured_speedup"]
    if count:
        ok, why = instruction_counting_status()
        if not ok:
            report["instructions"] = {"available": False, "reason": why}
        else:
            report["instructions"] = {"available": True, "bundle": _instructions_per_image(program, bundle)}
            if baseline:
                base = _instructions_per_image(program, baseline)
                report["instructions"]["baseline"] = base
                report["instructions"]["lazy_full_ratio"] = (
                    report["instructions"]["bundle"]["instructions_per_image"] / base["instructions_per_image"]
                )
    return report

"""Running a bundle inside the emulated ARM64 userland: golden parity, the lazy/full latency
ratio against a baseline bundle, and (where qemu can count) guest instructions per step.

Emulation is about 300x slower than native, so only ratios mean anything; instruction counts
are deterministic and unmoved by the load of a shared machine."""

from __future__ import annotations

import json
from pathlib import Path

from ..runtime.bundle import Bundle
from .count import count_instructions, instruction_counting_status
from .errors import DeviceError
from .guest import run_python

__all__ = ["run_on_device"]


def _guest_json(root: Path, args: list[str], timeout: float | None = None) -> dict:
    proc = run_python(root, ["-m", "lazydit.runtime.cli", *args], timeout=timeout)
    lines = [ln for ln in (proc.stdout or "").splitlines() if ln.startswith("{")]
    if not lines:
        raise DeviceError(f"emulated run failed (exit {proc.returncode}): {(proc.stderr or '').strip()[-2000:]}")
    return json.loads(lines[-1])


def _instructions_per_image(root: Path, bundle: str, backend: str) -> dict:
    """Instructions of one image: (load + 2 images) - (load + 1 image), so start-up and imports cancel."""
    counts = {}
    for runs in (1, 2):
        # one thread: a spinning intra-op thread pool would add instructions that do no work
        args = [
            "-m",
            "lazydit.runtime.cli",
            "bench",
            "--bundle",
            str(bundle),
            "--backend",
            backend,
            "--threads",
            "1",
            "--warmup",
            "0",
            "--runs",
            str(runs),
        ]
        counts[runs] = count_instructions(root, args).instructions
    per_image = counts[2] - counts[1]
    steps = len(Bundle.load(bundle, verify_hashes=False).steps)
    return {"instructions_per_image": per_image, "instructions_per_step": per_image / steps}


def run_on_device(
    root: Path, bundle: str, backend: str, baseline: str | None = None, runs: int = 3, count: bool = False
) -> dict:
    """Parity, then timing (against ``baseline`` if given), then optionally instruction counts, as one report.

    The guest runs ``python -m lazydit.runtime.cli``, the host's own runtime code through the shim, so the
    report measures the runtime being developed, on the aarch64 builds of its backends.
    """
    bundle = str(Path(bundle).resolve())
    parity = _guest_json(root, ["verify", "--bundle", bundle, "--backend", backend])
    report: dict = {"arch": "arm64", "backend": backend, "bundle": bundle, "parity": parity}
    # no peak-memory child: a process started inside the emulated userland would need the host's
    # binfmt set-up to run, and an emulator's resident memory is not the phone's
    bench_args = [
        "bench",
        "--bundle",
        bundle,
        "--backend",
        backend,
        "--warmup",
        "1",
        "--runs",
        str(runs),
        "--no-memory",
    ]
    if baseline:
        baseline = str(Path(baseline).resolve())
        bench_args += ["--baseline", baseline]
        report["baseline_parity"] = _guest_json(root, ["verify", "--bundle", baseline, "--backend", backend])
    report["bench"] = _guest_json(root, bench_args)
    if baseline:
        comp = report["bench"]["comparison"]
        report["lazy_full_ratio"] = 1 / comp["measured_speedup"]
    if count:
        ok, why = instruction_counting_status()
        if not ok:
            report["instructions"] = {"available": False, "reason": why}
        else:
            report["instructions"] = {"available": True, "bundle": _instructions_per_image(root, bundle, backend)}
            if baseline:
                base = _instructions_per_image(root, baseline, backend)
                report["instructions"]["baseline"] = base
                report["instructions"]["lazy_full_ratio"] = (
                    report["instructions"]["bundle"]["instructions_per_image"] / base["instructions_per_image"]
                )
    return report

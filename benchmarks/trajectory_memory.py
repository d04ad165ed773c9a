"""Peak memory of one trajectory-objective iteration with and without per-step checkpointing,
measured on the CPU beside the estimate ``lazydit train-gates --dry-run`` prints.

Each configuration runs in a fresh process: a random-weight DiT of the chosen size is built, a
two-step iteration warms the kernels up, the
process's resident-set high-water mark is reset (Linux ``/proc/self/clear_refs``), one training
iteration runs (the reference trajectory, the soft-lazy unroll, its backward pass and the Adam
step), and the high-water mark above the resident set before it is the measured figure. The
estimate's activations, gates and pool are what that figure covers (the weights were resident
before it)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

MB = 2**20


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(size: str, steps: int, batch: int, forecast: bool, checkpoint: bool) -> dict:
    """One iteration in this process; returns the measured peak and the estimate, in MB."""
    import torch

    from lazydit.gates import GateTrainConfig, memory_estimate, train_gates
    from lazydit.model import build_model

    torch.manual_seed(0)
    model = build_model(size)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    config = GateTrainConfig(
        steps=steps, iterations=1, batch=batch, pool=batch, forecast=forecast, checkpoint=checkpoint, device="cpu"
    )
    estimate = memory_estimate(model.config, config)
    # a two-step iteration first: the kernels and the libraries' pages they touch are then resident,
    # and what follows measures the training's tensors, not torch's code being paged in
    train_gates(model, replace(config, steps=2, target_ratio=0.25), progress=False)
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
    train_gates(model, config, progress=False)
    peak = _status("VmHWM") - before
    covered = estimate["total_mb"] - estimate["dit_weights_mb"]
    return {
        "size": size,
        "steps": steps,
        "batch": batch,
        "estimator": "forecast (order 1)" if forecast else "reuse",
        "checkpoint": checkpoint,
        "measured_peak_mb": peak / MB,
        "estimate_without_weights_mb": covered,
        "estimate": estimate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="DiT-S/2")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--out", default="results/trajectory-memory.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        forecast, checkpoint = (flag == "1" for flag in args.child.split(","))
        print(json.dumps(measure(args.size, args.steps, args.batch, forecast, checkpoint)))
        return
    rows = []
    for forecast in (False, True):
        for checkpoint in (True, False):
            child = [sys.executable, __file__, "--size", args.size, "--steps", str(args.steps)]
            child += ["--batch", str(args.batch), "--child", f"{int(forecast)},{int(checkpoint)}"]
            row = json.loads(subprocess.run(child, capture_output=True, text=True, check=True).stdout)
            rows.append(row)
            print(
                f"{row['estimator']:20s} checkpoint={checkpoint!s:5s} measured {row['measured_peak_mb']:8.0f} MB"
                f"  estimate {row['estimate_without_weights_mb']:8.0f} MB",
                flush=True,
            )
            Path(args.out).write_text(json.dumps({"rows": rows, "ratio_without_over_with": _ratios(rows)}, indent=1))
    for estimator, ratio in _ratios(rows).items():
        print(f"{estimator}: {ratio:.1f}x less memory with checkpointing")


def _ratios(rows: list[dict]) -> dict[str, float]:
    """Measured peak without checkpointing over the peak with it, per estimator measured both ways."""
    ratios = {}
    for estimator in dict.fromkeys(r["estimator"] for r in rows):
        peaks = {r["checkpoint"]: r["measured_peak_mb"] for r in rows if r["estimator"] == estimator}
        if len(peaks) == 2:
            ratios[estimator] = peaks[False] / peaks[True]
    return ratios


if __name__ == "__main__":
    main()

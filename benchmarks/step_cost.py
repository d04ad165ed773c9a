"""Where a lazy bundle's step time goes: a least-squares fit of each step's latency to what the
step does (a constant, computed branches, cache inputs read, outputs written), from a
``lazydit bench --bundle LAZY --baseline FULL --json BENCH`` report, beside the no-skip step.

The fit is over the lazy bundle's own steps (their per-step means in the report), so it shows
how much of a step is fixed cost, how much each computed branch costs compared with a branch of
the no-skip bundle (whose step computes all of them in one method), and what each cache tensor
that crosses the method boundary costs.

    lazydit bench --bundle lazy --baseline full --backend executorch --threads 2 --runs 30 --json b.json
    python benchmarks/step_cost.py b.json --out results/step-cost-default-executorch.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lazydit.files import write_json

TERMS = ("constant", "per_computed_branch", "per_input", "per_output")


def step_features(manifest: dict) -> np.ndarray:
    """One row per step: 1, branches computed, method inputs, method outputs."""
    rows = []
    for step in manifest["steps"]:
        method = manifest["methods"][step["method"]]
        rows.append([1.0, step["computed"], len(method["inputs"]), len(method["outputs"])])
    return np.array(rows)


def analyse(report: dict) -> dict:
    lazy, full = (next(b for b in report["benchmarks"] if b["role"] == role) for role in ("lazy", "baseline"))
    manifests = [json.loads((Path(b["bundle"]) / "manifest.json").read_text()) for b in (lazy, full)]
    features = step_features(manifests[0])
    times = np.array(lazy["per_step_latency(ms)"])
    coef, *_ = np.linalg.lstsq(features, times, rcond=None)
    fitted = features @ coef
    full_steps = np.array(full["per_step_latency(ms)"])
    full_step = float(np.median(full_steps))
    branches = int(manifests[1]["steps"][0]["computed"] + manifests[1]["steps"][0]["skipped"])
    skip_all = [i for i, s in enumerate(manifests[0]["steps"]) if s["computed"] == 0]
    io = features[:, 2:] @ coef[2:]
    return {
        "backend": lazy["backend"],
        "threads": report.get("threads"),
        "bundles": {"lazy": lazy["bundle"], "full": full["bundle"]},
        "comparison": report.get("comparison", {}),
        "full_step_ms": full_step,
        "full_branch_ms": full_step / branches,
        "skip_everything_steps": skip_all,
        "skip_everything_step_ms": float(np.mean(times[skip_all])) if skip_all else None,
        "skip_everything_over_full": float(np.mean(times[skip_all]) / full_step) if skip_all else None,
        "fit_ms": dict(zip(TERMS, (float(c) for c in coef))),
        "fit_rms_ms": float(np.sqrt(np.mean((fitted - times) ** 2))),
        "lazy_branch_over_full_branch": float(coef[1] / (full_step / branches)),
        "loop_ms": float(times.sum()),
        "loop_ms_in_cache_io": float(io.sum()),
        "loop_ms_in_constant": float(coef[0] * len(times)),
        "per_step": [
            {
                "step": i,
                "computed": int(f[1]),
                "inputs": int(f[2]),
                "outputs": int(f[3]),
                "ms": float(t),
                "fit_ms": float(p),
            }
            for i, (f, t, p) in enumerate(zip(features, times, fitted))
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path, help="JSON of `lazydit bench --bundle LAZY --baseline FULL`")
    parser.add_argument("--out", type=Path, help="where to write the analysis (default: print it)")
    args = parser.parse_args()
    result = analyse(json.loads(args.bench.read_text()))
    if args.out:
        write_json(args.out, result)
    fit = result["fit_ms"]
    print(
        f"{result['backend']}: full step {result['full_step_ms']:.3f} ms ({result['full_branch_ms']:.3f} per branch); "
        f"lazy steps = {fit['constant']:.3f} + {fit['per_computed_branch']:.3f}/branch + {fit['per_input']:.4f}/input "
        f"+ {fit['per_output']:.4f}/output ms (rms {result['fit_rms_ms']:.3f}); of the lazy loop's "
        f"{result['loop_ms']:.2f} ms, {result['loop_ms_in_cache_io']:.2f} in inputs/outputs and "
        f"{result['loop_ms_in_constant']:.2f} fixed"
    )


if __name__ == "__main__":
    main()

"""Precision x laziness on the default model: one table of quality, size, latency and memory.

For the no-skip DDIM-20 bundle and the shipped 20-step LazyDiT 50% + forecast plan, each in
fp32, fp16 and int8, on ExecuTorch and onnxruntime:
- PSNR of the final images against the eager fp32 no-skip DDIM-20 from the same noise,
- Frechet distance on both digit extractors (and class accuracy),
- the format's bundle size, latency (2 threads, median and p90) and peak resident memory,
and whether the errors of quantization and laziness compound: the PSNR of (lazy, precision)
against the prediction from (lazy, fp32) and (full, precision) if their errors were independent
and added (noise powers add: 10^(-p/10) summed).

Bundles are exported once into ``--work`` and reused; results are written as they finish
(``--json``, then a Markdown table beside it), so a run can be resumed.

    python benchmarks/precision_table.py --json results/precision-default.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lazydit import api
from lazydit.api import generate_set
from lazydit.data import from_uint8
from lazydit.export.bundle import ExportOptions
from lazydit.files import write_json
from lazydit.macs import plan_record
from lazydit.metrics import evaluate
from lazydit.pipelines import ModelSource, load
from lazydit.policies import PlanRequest, make_plan
from lazydit.runtime.bench import BenchConfig, bench
from lazydit.runtime.bundle import Bundle
from lazydit.samples import SamplingConfig, sample_bundle

PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = {"executorch": "executorch", "onnxruntime": "onnx"}


def export(work: Path, kind: str, precision: str, steps: int, ratio: float) -> Path:
    """The no-skip bundle, or the shipped LazyDiT gates' plan at ``ratio`` with forecasting."""
    out = work / f"{kind}-{precision}"
    if (out / "manifest.json").is_file():
        return out
    options = ExportOptions(formats=tuple(BACKENDS.values()), precision=precision, force=True)
    plan = None
    if kind == "lazy":
        plan = work / f"plan-lazydit-{steps}-{ratio}.json"
        if not plan.is_file():
            model = load(ModelSource()).dit
            made = make_plan("lazydit", model, PlanRequest(steps=steps, ratio=ratio, forecast=True))
            write_json(plan, plan_record(model.config, made))
    api.export(options, out, ModelSource(), plan=str(plan) if plan else None, steps=steps)
    return out


def bundle_bytes(root: Path, fmt: str) -> int:
    return sum(f["bytes"] for f in Bundle.load(root, verify_hashes=False).artifact(fmt)["files"])


def compounding(rows: dict, backend: str, precision: str) -> dict | None:
    """Measured PSNR of (lazy, precision) against the independent-errors prediction."""
    try:
        lazy32 = rows[f"lazy-fp32/{backend}"]["psnr_db"]
        full_p = rows[f"full-{precision}/{backend}"]["psnr_db"]
        both = rows[f"lazy-{precision}/{backend}"]["psnr_db"]
    except KeyError:
        return None
    predicted = -10 * math.log10(10 ** (-lazy32 / 10) + 10 ** (-full_p / 10))
    return {"measured_db": both, "independent_prediction_db": predicted, "excess_db": predicted - both}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def to_markdown(report: dict) -> str:
    nan = float("nan")
    head = (
        f"Default model, DDIM-{report['steps']}, {report['samples']} samples (seed {report['seed']}), "
        f"{report['threads']} threads. PSNR against eager fp32 no-skip DDIM-{report['steps']} from the same noise."
    )
    note = (
        "peak MB: the process's peak resident set running one image; in brackets the part above the "
        "backend's libraries (weights, buffers, the run)."
    )
    lines = [head, ""]
    header = ["bundle", "backend", "PSNR dB", "FD cnn", "FD mlp", "accuracy", "size MB", "median ms", "p90 ms"]
    rows = [
        [
            *key.split("/"),
            f"{r['psnr_db']:.1f}",
            f"{r.get('fd_cnn', nan):.3f}",
            f"{r.get('fd_mlp', nan):.3f}",
            f"{r.get('class_accuracy', nan):.3f}",
            f"{r['bundle_mb']:.2f}",
            f"{r['median_ms']:.1f}",
            f"{r['p90_ms']:.1f}",
            f"{r['peak_rss_mb']:.0f} ({r['bundle_rss_mb']:.0f})",
        ]
        for key, r in report["rows"].items()
    ]
    lines += _table([*header, "peak MB (bundle)"], rows)
    lines += ["", note]
    if report.get("compounding"):
        header = ["lazy + precision", "backend", "measured PSNR", "if errors were independent", "excess"]
        rows = [
            [
                f"lazy {key.split('/')[0]}",
                key.split("/")[1],
                f"{c['measured_db']:.1f} dB",
                f"{c['independent_prediction_db']:.1f} dB",
                f"{c['excess_db']:+.1f} dB",
            ]
            for key, c in report["compounding"].items()
        ]
        lines += ["", *_table(header, rows)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default="results/precision-default.json", help="report path (Markdown beside it)")
    parser.add_argument("--work", default="out/precision", help="where the bundles are exported (reused)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--ratio", type=float, default=0.5, help="lazy ratio of the LazyDiT plan")
    parser.add_argument("--per-class", type=int, default=100, help="samples per class for PSNR and FD")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per bundle")
    args = parser.parse_args(argv)
    work, out = Path(args.work), Path(args.json)
    work.mkdir(parents=True, exist_ok=True)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report.update({"steps": args.steps, "seed": args.seed, "threads": args.threads, "command": " ".join(sys.argv)})
    rows = report.setdefault("rows", {})
    config = SamplingConfig(per_class=args.per_class, seed=args.seed, steps=args.steps)
    print("eager fp32 no-skip reference", flush=True)
    ref_u8, labels, _, _ = generate_set(ModelSource(), config)
    reference = from_uint8(ref_u8)
    report["samples"] = len(labels)
    for kind in ("full", "lazy"):
        for precision in PRECISIONS:
            root = export(work, kind, precision, args.steps, args.ratio)
            baseline = export(work, "full", precision, args.steps, args.ratio) if kind == "lazy" else None
            for backend, fmt in BACKENDS.items():
                key = f"{kind}-{precision}/{backend}"
                if key in rows:
                    continue
                t0 = time.perf_counter()
                images, got_labels, _ = sample_bundle(root, backend, config)
                assert np.array_equal(got_labels, labels)
                quality = evaluate(from_uint8(images), torch.as_tensor(labels), reference)
                timing = bench(str(root), BenchConfig(backend=backend, threads=args.threads, warmup=3, runs=args.runs))
                record = timing["benchmarks"][0]
                rows[key] = {
                    **quality,
                    "bundle_mb": bundle_bytes(root, fmt) / 2**20,
                    "median_ms": record["median_latency(ms)"],
                    "p90_ms": record["p90_latency(ms)"],
                    "peak_rss_mb": record["memory"]["peak_rss_mb"],
                    "bundle_rss_mb": record["memory"]["bundle_rss_mb"],
                    "weights_cache": record["weights_cache"],
                    "macs_per_image": record["macs_per_image"],
                }
                if baseline is not None:
                    paired = bench(
                        str(root),
                        BenchConfig(backend=backend, threads=args.threads, warmup=3, runs=args.runs, memory=False),
                        baseline=str(baseline),
                    )
                    rows[key]["vs_full_same_precision"] = paired["comparison"]
                print(f"{key}: {rows[key]['psnr_db']:.1f} dB in {time.perf_counter() - t0:.0f} s", flush=True)
                report["compounding"] = {
                    f"{p}/{b}": c for p in ("fp16", "int8") for b in BACKENDS if (c := compounding(rows, b, p))
                }
                write_json(out, report)
                out.with_suffix(".md").write_text(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The equal-latency table: every caching policy on the same model and the same initial noise.

Rows are sampled eagerly with the reference sampler; columns are MACs per image, measured eager
latency per image, class accuracy, Frechet distance with two feature extractors (absolute and as
a multiple of the real-vs-real floor) and PSNR against DDIM-50 from the same noise.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .macs import module_macs, plan_macs
from .metrics import evaluate
from .model import DiT
from .plans import Plan
from .policies import PlanRequest, make_plan
from .samples import generate


@dataclass
class Row:
    name: str
    policy: str
    steps: int
    ratio: float | None = None
    interval: int | None = None
    forecast: bool = False
    dynamic: bool = False
    params: dict = field(default_factory=dict)


def default_rows() -> list[Row]:
    rows = [Row(f"DDIM-{n}", "ddim", n) for n in (50, 25, 20, 10, 5)]
    lazy = [Row(f"LazyDiT-{n} @{int(r * 100)}%", "lazydit", n, ratio=r) for n, r in ((50, 0.5), (20, 0.5), (10, 0.5),
                                                                                     (10, 0.3))]
    lazy += [Row(f"LazyDiT-{n} @50% per-step", "lazydit", n, ratio=0.5, params={"budget": "per-step"})
             for n in (20, 10)]
    rows += lazy
    rows += [Row(r.name + " dynamic", "lazydit", r.steps, ratio=r.ratio, dynamic=True) for r in lazy[:4]]
    others = [Row("FORA-20 n=2", "fora", 20, interval=2), Row("FORA-20 n=3", "fora", 20, interval=3),
              Row("FORA-10 n=2", "fora", 10, interval=2), Row("L2C-20 @50%", "l2c", 20, ratio=0.5),
              Row("random-20 @50%", "random", 20, ratio=0.5)]
    rows += others
    rows += [Row(r.name + " +forecast", r.policy, r.steps, r.ratio, r.interval, forecast=True, params=r.params)
             for r in lazy + others]
    return rows


def _dynamic_decider(model: DiT, plan: Plan, steps: int):
    """Per-sample gating whose threshold is the static plan's cut-off score, so both skip about
    the same share of modules."""
    from .gates import calibrate, default_gates_path, load_gates

    gates = load_gates(plan.params.get("gates") or default_gates_path(steps), model, steps)
    scores = calibrate(model, gates, per_class=plan.params.get("calib_per_class", 4), seed=1000)
    skipped = [float(scores[k, b, ("attn", "mlp").index(m)]) for k, b, m in plan.skipped_cells()]
    kept = [float(scores[k, b, mi]) for k in range(1, steps) for b in range(plan.depth) for mi, m in
            enumerate(("attn", "mlp")) if plan.action(k, b, m) == "C"]
    threshold = (max(skipped) + min(kept)) / 2 if skipped and kept else 0.5
    return (lambda: (lambda k, b, m, h: gates.pair_score(k, b, m, h) >= threshold)), threshold


def run_row(model: DiT, row: Row, per_class: int, seed: int, cfg: float, reference: torch.Tensor | None,
            progress: bool = True) -> tuple[dict, torch.Tensor]:
    plan = make_plan(row.policy, model, PlanRequest(steps=row.steps, ratio=row.ratio, interval=row.interval,
                                                    budget=row.params.get("budget", "global")))
    if row.forecast:
        plan = plan.with_forecast()
    factory, extra = None, {}
    if row.dynamic:
        factory, threshold = _dynamic_decider(model, plan, row.steps)
        extra["threshold"] = threshold
        plan_for_run = Plan.full(row.steps, model.config.depth, policy="lazydit-dynamic")
    else:
        plan_for_run = plan
    start = time.perf_counter()
    images, labels, per_image = generate(model, plan_for_run, per_class, seed, cfg, decider_factory=factory,
                                         progress=progress)
    wall = time.perf_counter() - start
    if row.dynamic:
        macs, ratio = _dynamic_macs(model, plan_for_run, per_class, seed, cfg, factory)
    else:
        counted = plan_macs(model.config, plan)
        macs, ratio = counted["macs_per_image"], plan.lazy_ratio
    quality = evaluate(images, labels, reference)
    result = {"name": row.name, "policy": row.policy, "steps": row.steps, "forecast": row.forecast,
              "dynamic": row.dynamic, "lazy_ratio": ratio, "macs_per_image": macs,
              "eager_ms_per_image": per_image * 1000, "wall_s": wall, **extra, **quality}
    return result, images


def _dynamic_macs(model: DiT, plan: Plan, per_class: int, seed: int, cfg: float, factory) -> tuple[float, float]:
    """Mean MACs per image of dynamic gating, from the decisions it made on a subset."""
    from .diffusion import initial_noise
    from .sampler import sample
    from .samples import class_labels

    c = model.config
    labels = class_labels(c.num_classes, min(per_class, 10))
    noise = initial_noise(len(labels), (c.in_channels, c.input_size, c.input_size), seed)
    parts = module_macs(c)
    full_step = plan_macs(c, Plan.full(1, c.depth))["macs_per_image"]
    total, skipped, cells = 0.0, 0.0, 0
    records = []
    sample(model, noise, labels, plan, cfg, decider=factory(), on_step=records.append)
    for rec in records:
        step = full_step
        for (b, m), frac in rec.computed.items():
            step -= 2 * (1 - frac) * parts[m]
            skipped += 1 - frac
            cells += 1
        total += step
    return total, skipped / cells


def compare(model: DiT, rows: list[Row], per_class: int = 100, seed: int = 0, cfg: float = 1.5,
            progress: bool = True) -> dict:
    ref_row = next((r for r in rows if r.policy == "ddim" and r.steps == 50), Row("DDIM-50", "ddim", 50))
    results = []
    ref_result, reference = run_row(model, ref_row, per_class, seed, cfg, None, progress)
    ref_result["psnr_db"] = float("inf")
    for row in rows:
        if row is ref_row:
            results.append(ref_result)
            continue
        if progress:
            print(f"row {row.name}", flush=True)
        result, _ = run_row(model, row, per_class, seed, cfg, reference, progress)
        results.append(result)
    return {"per_class": per_class, "seed": seed, "cfg": cfg, "rows": results}


def to_markdown(report: dict) -> str:
    r0 = report["rows"][0]
    lines = [
        (f"Same initial noise for every row; {report['per_class']} samples per class, guidance {report['cfg']}, "
        f"seed {report['seed']}. FD is shown as a multiple of the real-vs-real floor "
        f"(CNN floor {r0['fd_cnn_floor']:.3f}, MLP floor {r0['fd_mlp_floor']:.3f})."),
        "",
        ("| sampler | lazy ratio | MACs/image (M) | eager ms/image | class acc | FD CNN (x floor) | FD MLP (x floor) "
        "| PSNR vs DDIM-50 (dB) |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        psnr = "-" if r["psnr_db"] == float("inf") else f"{r['psnr_db']:.1f}"
        lines.append(f"| {r['name']} | {r['lazy_ratio']:.2f} | {r['macs_per_image'] / 1e6:.0f} | "
                     f"{r['eager_ms_per_image']:.2f} | {r['class_accuracy']:.3f} | {r['fd_cnn_ratio']:.2f} | "
                     f"{r['fd_mlp_ratio']:.2f} | {psnr} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | Path, command: str) -> None:
    from .checkpoints import atomic_write

    out_dir = Path(out_dir)
    text = f"# Equal-latency comparison\n\nRegenerate with:\n\n```sh\n{command}\n```\n\n" + to_markdown(report)
    atomic_write(out_dir / "compare.md", lambda tmp: tmp.write_text(text))
    atomic_write(out_dir / "compare.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))

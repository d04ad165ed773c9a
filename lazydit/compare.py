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
from .options import opt
from .plans import Plan
from .policies import PlanRequest, make_plan
from .samples import class_labels, generate


@dataclass
class Row:
    name: str
    policy: str
    steps: int
    ratio: float | None = None
    interval: int | None = None
    forecast: bool = False
    forecast_order: int = 1
    dynamic: bool = False
    params: dict = field(default_factory=dict)


FRONTIER_STEPS = (50, 20)
FRONTIER_RATIOS = (0.25, 0.5, 0.67, 0.75, 0.85)
# each family is one curve: a policy with its settings, made at every (steps, ratio)
FRONTIER_FAMILIES = {
    "ddim": {},  # DDIM with the equal-compute step count
    "fora": {},
    "fora+forecast": {"forecast": True},
    "fora+forecast-2": {"forecast": True, "forecast_order": 2},
    "taylorseer-1": {"forecast_order": 1},
    "taylorseer-2": {"forecast_order": 2},
    "taylorseer-3": {"forecast_order": 3},
    "random": {},
    "lazydit": {},
    "lazydit+forecast": {"forecast": True},
    "lazydit-dynamic": {"dynamic": True},
    "lazydit-dynamic+forecast": {"dynamic": True, "forecast": True},
    # the searches below lower the calibration noises' mean squared error (their rows were made so)
    "search+forecast": {"forecast": True, "params": {"search_objective": "mse"}},
    "search+forecast-2": {"forecast": True, "forecast_order": 2, "params": {"search_objective": "mse"}},
    # the search started from FORA + order-2 forecast at FORA's own budget, on 60 calibration
    # noises drawn apart from the evaluation's (seed 1), one round
    "search-fora+forecast-2": {
        "forecast": True,
        "forecast_order": 2,
        "params": {"start": "fora", "calib_samples": 60, "seed": 1, "search_rounds": 1, "search_objective": "mse"},
    },
    # the same, with two rounds of moving computes between modules before the round of shifts, each
    # round kept only if it also lowers the error of 60 held-out noises
    "search-fora-transfer+forecast-2": {
        "forecast": True,
        "forecast_order": 2,
        "params": {
            "start": "fora",
            "calib_samples": 60,
            "check_samples": 60,
            "seed": 1,
            "search_rounds": 1,
            "search_transfers": 2,
            "search_objective": "mse",
        },
    },
    # the same search started from TaylorSeer's schedule at the row's ratio (its first steps
    # computed, then every N-th), forecasting to order 3 in TaylorSeer's basis: where TaylorSeer
    # is the best fixed schedule (the highest budgets), the search refines it rather than FORA
    "search-taylorseer-transfer+forecast-3": {
        "forecast": True,
        "forecast_order": 3,
        "params": {
            "start": "taylorseer",
            "calib_samples": 60,
            "check_samples": 60,
            "seed": 1,
            "search_rounds": 1,
            "search_transfers": 2,
            "search_objective": "mse",
        },
    },
    # the searches from FORA and from TaylorSeer with the objective the table scores them on: the
    # calibration noises' mean per-image PSNR (a mean of log errors), not their mean squared error,
    # which the few worst images dominate; one round of shifts, each kept only if 60 held-out noises agree
    "search-fora-psnr+forecast-2": {
        "forecast": True,
        "forecast_order": 2,
        "params": {"start": "fora", "calib_samples": 60, "check_samples": 60, "seed": 1, "search_rounds": 1},
    },
    "search-taylorseer-psnr+forecast-3": {
        "forecast": True,
        "forecast_order": 3,
        "params": {"start": "taylorseer", "calib_samples": 60, "check_samples": 60, "seed": 1, "search_rounds": 1},
    },
}
FIXED_FAMILIES = ("ddim", "fora", "fora+forecast", "fora+forecast-2", "taylorseer-1", "taylorseer-2", "taylorseer-3")


@dataclass
class CompareConfig:
    per_class: int = opt(100, "samples per class per row")
    seed: int = opt(0, "noise seed; sample i's noise depends only on (seed, i)")
    cfg_scale: float = opt(1.5, "classifier-free guidance scale")
    rows: tuple[str, ...] = opt((), "row names to run (default: all; DDIM-50 always runs)")
    frontier: bool = opt(
        False,
        "instead of the table: the quality-vs-compute frontier, every policy family at every budget "
        "(frontier.md, frontier.json, frontier.png); resumable: rows already in frontier.json are kept",
    )
    frontier_steps: tuple[int, ...] = opt(FRONTIER_STEPS, "frontier: DDIM step counts")
    frontier_ratios: tuple[float, ...] = opt(FRONTIER_RATIOS, "frontier: lazy ratios (skipped / all modules)")
    frontier_families: tuple[str, ...] = opt((), "frontier: policy families to run (default: all)")
    drift: bool = opt(
        False,
        "instead of the table: per-step PSNR against the no-skip sampler and the samples side by side "
        "(drift.md, drift.json, drift.png) for 20-step rows (default: DDIM-20, LazyDiT with and without "
        "forecast, the paper's local recipe, L2C, FORA + forecast, random)",
    )


def select_rows(names: tuple[str, ...], drift: bool = False) -> list[Row]:
    """The rows a run asks for by name: the table always keeps its DDIM-50 reference; drift takes
    static rows only and defaults to :data:`DRIFT_ROWS`."""
    rows = default_rows()
    by_name = {r.name: r for r in rows}
    if drift:
        wanted = list(names or DRIFT_ROWS)
        unknown = [w for w in wanted if w not in by_name or by_name[w].dynamic]
        if unknown:
            raise ValueError(f"unknown or dynamic rows {unknown}; known: {[r.name for r in rows if not r.dynamic]}")
        return [by_name[w] for w in wanted]
    unknown = set(names) - set(by_name)
    if unknown:
        raise ValueError(f"unknown rows {sorted(unknown)}; known: {[r.name for r in rows]}")
    return [r for r in rows if not names or r.name in names or r.name == "DDIM-50"]


def default_rows() -> list[Row]:
    rows = [Row(f"DDIM-{n}", "ddim", n) for n in (50, 25, 20, 10, 5)]
    lazy = [
        Row(f"LazyDiT-{n} @{int(r * 100)}%", "lazydit", n, ratio=r)
        for n, r in ((50, 0.5), (20, 0.5), (10, 0.5), (10, 0.3))
    ]
    # the paper's recipe (one-step local loss), ranked globally and with the same budget in every step
    paper = [
        Row(f"LazyDiT-{n} @50% local", "lazydit", n, ratio=0.5, params={"objective": "local"}) for n in (50, 20, 10)
    ]
    paper += [
        Row(
            "LazyDiT-20 @50% local per-step",
            "lazydit",
            20,
            ratio=0.5,
            params={"objective": "local", "budget": "per-step"},
        )
    ]
    rows += lazy + paper
    rows += [
        Row(r.name + " dynamic", "lazydit", r.steps, ratio=r.ratio, dynamic=True, params=r.params)
        for r in lazy + paper[1:2]
    ]
    others = [
        Row("FORA-20 n=2", "fora", 20, interval=2),
        Row("FORA-20 n=3", "fora", 20, interval=3),
        Row("FORA-10 n=2", "fora", 10, interval=2),
        Row("L2C-20 @50%", "l2c", 20, ratio=0.5),
        Row("random-20 @50%", "random", 20, ratio=0.5),
    ]
    rows += others
    rows += [
        Row(r.name + " +forecast", r.policy, r.steps, r.ratio, r.interval, forecast=True, params=r.params)
        for r in lazy + paper[:3] + others
    ]
    return rows


def frontier_rows(
    steps: tuple[int, ...] = FRONTIER_STEPS,
    ratios: tuple[float, ...] = FRONTIER_RATIOS,
    families: tuple[str, ...] = (),
) -> list[Row]:
    """One row per (family, steps, ratio) that the family can make: DDIM at the equal-compute
    step count, FORA at the interval 1 / (1 - ratio) when it is a whole number of at least 2
    (rounded: 0.67 is every 3rd step, 0.85 every 7th), the rest at the ratio itself."""
    unknown = sorted(set(families) - set(FRONTIER_FAMILIES))
    if unknown:
        raise ValueError(f"unknown frontier families {unknown}; known: {sorted(FRONTIER_FAMILIES)}")
    rows = []
    for n in steps:
        for r in ratios:
            for family, extra in FRONTIER_FAMILIES.items():
                if families and family not in families:
                    continue
                tag = f"{n}@{round(r * 100)}%"
                base = {"family": family, "frontier_steps": n, "target_ratio": r}
                policy = family.split("+")[0].split("-")[0]
                if family == "ddim":
                    m = max(1, round(n * (1 - r)))
                    rows.append(Row(f"DDIM-{m} ({tag})", "ddim", m, params=base))
                    continue
                # FORA's rows, and rows refining a FORA start, run at FORA's interval
                if policy == "fora" or extra.get("params", {}).get("start") == "fora":
                    interval = round(1 / (1 - r))
                    if interval < 2:
                        continue
                    settings = {k: v for k, v in extra.items() if k != "params"}
                    params = {**base, **extra.get("params", {})}
                    rows.append(Row(f"{family} {tag}", policy, n, interval=interval, params=params, **settings))
                    continue
                dynamic = extra.get("dynamic", False)
                settings = {k: v for k, v in extra.items() if k not in ("dynamic", "params")}
                params = {**base, **extra.get("params", {})}
                rows.append(Row(f"{family} {tag}", policy, n, ratio=r, dynamic=dynamic, params=params, **settings))
    return rows


def frontier(
    model: DiT,
    rows: list[Row],
    out_dir: str | Path,
    command: str,
    per_class: int = 100,
    seed: int = 0,
    cfg_scale: float = 1.5,
    progress: bool = True,
) -> dict:
    """Run the rows not yet in ``out_dir/frontier.json`` (same model, samples and seed), writing
    the report after every row, so a sweep split into parts or stopped half-way resumes."""
    from .checkpoints import weights_hash
    from .files import atomic_write

    out_dir = Path(out_dir)
    path = out_dir / "frontier.json"
    key = {"model": weights_hash(model), "per_class": per_class, "seed": seed, "cfg": cfg_scale}
    report = {**key, "reference": "DDIM-50", "rows": {}}
    if path.is_file():
        previous = json.loads(path.read_text())
        if {k: previous.get(k) for k in key} != key:
            raise ValueError(
                f"{path} holds a frontier of another model or sampling ({ {k: previous.get(k) for k in key} }); "
                "use another --out or remove it"
            )
        report = previous
    todo = [r for r in rows if r.name not in report["rows"]]
    if todo and command not in report.setdefault("commands", []):
        report["commands"].append(command)  # the report lists every part of the sweep that made it
    if not todo:
        write_frontier(report, out_dir, command)
        return report
    ref_result, reference = run_row(model, Row("DDIM-50", "ddim", 50), per_class, seed, cfg_scale, None, progress)
    report["reference_result"] = ref_result
    for i, row in enumerate(todo):
        if progress:
            print(f"frontier row {i + 1}/{len(todo)}: {row.name}", flush=True)
        result, _ = run_row(model, row, per_class, seed, cfg_scale, reference, progress)
        report["rows"][row.name] = {**result, **row.params}
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"))
    write_frontier(report, out_dir, command)
    return report


def frontier_markdown(report: dict) -> str:
    """Per step count and budget: every family's MACs, PSNR against DDIM-50 and FD, the best
    fixed schedule and the best learned or searched plan."""
    ref = report.get("reference_result", {})
    lines = [
        (
            f"Same initial noise for every row; {report['per_class']} samples per class, guidance {report['cfg']}, "
            f"seed {report['seed']}; PSNR against DDIM-50 from the same noise; FD as a multiple of the "
            f"real-vs-real floor (DDIM-50 itself: CNN {ref.get('fd_cnn_ratio', float('nan')):.2f}, "
            f"MLP {ref.get('fd_mlp_ratio', float('nan')):.2f}). Fixed schedules: {', '.join(FIXED_FAMILIES)}."
        ),
        "",
    ]
    rows = list(report["rows"].values())
    for n in sorted({r["frontier_steps"] for r in rows}, reverse=True):
        lines += [
            f"## {n} steps",
            "",
            "| budget | family | lazy ratio | MACs/image (M) | PSNR (dB) | FD CNN | FD MLP | plan s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted({r["target_ratio"] for r in rows if r["frontier_steps"] == n}):
            group = [x for x in rows if x["frontier_steps"] == n and x["target_ratio"] == r]
            for x in sorted(group, key=lambda x: -x["psnr_db"]):
                lines.append(
                    f"| {round(r * 100)}% | {x['family']} | {x['lazy_ratio']:.3f} | {x['macs_per_image'] / 1e6:.1f} | "
                    f"{x['psnr_db']:.2f} | {x['fd_cnn_ratio']:.2f} | {x['fd_mlp_ratio']:.2f} | {x.get('plan_s', 0):.1f} |"
                )
            fixed = [x for x in group if x["family"] in FIXED_FAMILIES]
            learned = [x for x in group if x["family"] not in FIXED_FAMILIES + ("random",)]
            if fixed and learned:
                bf, bl = max(fixed, key=lambda x: x["psnr_db"]), max(learned, key=lambda x: x["psnr_db"])
                lines.append(
                    f"| {round(r * 100)}% | **best learned/searched - best fixed** | | | "
                    f"**{bl['psnr_db'] - bf['psnr_db']:+.2f}** ({bl['family']} vs {bf['family']}) | "
                    f"{bl['fd_cnn_ratio'] - bf['fd_cnn_ratio']:+.2f} | {bl['fd_mlp_ratio'] - bf['fd_mlp_ratio']:+.2f} | |"
                )
        lines.append("")
    return "\n".join(lines)


def write_frontier(report: dict, out_dir: str | Path, command: str) -> None:
    """frontier.md (tables) and frontier.png (one curve per family: PSNR and both FDs against
    MACs per image, one row of panels per step count)."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    from .files import atomic_write

    out_dir = Path(out_dir)
    commands = "\n".join(report.get("commands") or [command])
    text = (
        "# Quality against compute: the frontier\n\nRegenerate (resumable; rows already in frontier.json "
        f"are kept):\n\n```sh\n{commands}\n```\n\n" + frontier_markdown(report)
    )
    atomic_write(out_dir / "frontier.md", lambda tmp: tmp.write_text(text))
    rows = list(report["rows"].values())
    counts = sorted({r["frontier_steps"] for r in rows}, reverse=True)
    if not counts:
        return
    fig, axes = plt.subplots(len(counts), 3, figsize=(16, 4.6 * len(counts)), squeeze=False)
    for i, n in enumerate(counts):
        for j, (metric, label) in enumerate(
            (
                ("psnr_db", "PSNR vs DDIM-50 (dB)"),
                ("fd_cnn_ratio", "FD CNN (x floor)"),
                ("fd_mlp_ratio", "FD MLP (x floor)"),
            )
        ):
            ax = axes[i][j]
            for family in FRONTIER_FAMILIES:
                pts = sorted(
                    (r["macs_per_image"] / 1e6, r[metric])
                    for r in rows
                    if r["frontier_steps"] == n and r["family"] == family
                )
                if pts:
                    style = "--" if family in FIXED_FAMILIES else "-"
                    ax.plot(*zip(*pts), style, marker="o", ms=3, label=family)
            ax.set_xlabel("MACs per image (M)")
            ax.set_ylabel(label)
            ax.set_title(f"{n} steps")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write(out_dir / "frontier.png", lambda tmp: tmp.write_bytes(buf.getvalue()))


def _dynamic_decider(model: DiT, plan: Plan, steps: int):
    """Per-sample gating at the static plan's cut-off logit, so both skip about the same share of
    modules. Compared on logits: saturated scores cannot tell cells apart."""
    from .gates import load_gates

    gates = load_gates(plan.params["gates"], model, steps)
    threshold = plan.params["cutoff_logit"]
    return (lambda: lambda k, b, m, h: gates.pair_logit(k, b, m, h) >= threshold), threshold


def run_row(
    model: DiT,
    row: Row,
    per_class: int,
    seed: int,
    cfg_scale: float,
    reference: torch.Tensor | None,
    progress: bool = True,
) -> tuple[dict, torch.Tensor]:
    started = time.perf_counter()
    plan = row_plan(model, row)
    extra = {"plan_s": time.perf_counter() - started}
    factory = None
    if row.dynamic:
        factory, threshold = _dynamic_decider(model, plan, row.steps)
        extra["threshold"] = threshold
        plan_for_run = Plan.full(row.steps, model.config.depth, policy="lazydit-dynamic", sampler=model.sampler)
    else:
        plan_for_run = plan
    start = time.perf_counter()
    labels = class_labels(model.config.num_classes, per_class)
    images, labels, per_image = generate(
        model, plan_for_run, labels, seed, cfg_scale, decider_factory=factory, progress=progress
    )
    wall = time.perf_counter() - start
    if row.dynamic:
        macs, ratio = _dynamic_macs(model, plan_for_run, per_class, seed, cfg_scale, factory)
    else:
        counted = plan_macs(model.config, plan)
        macs, ratio = counted["macs_per_image"], plan.lazy_ratio
    quality = evaluate(images, labels, reference)
    result = {
        "name": row.name,
        "policy": row.policy,
        "steps": row.steps,
        "forecast": row.forecast,
        "dynamic": row.dynamic,
        "lazy_ratio": ratio,
        "macs_per_image": macs,
        "eager_ms_per_image": per_image * 1000,
        "wall_s": wall,
        **extra,
        **quality,
    }
    return result, images


def _dynamic_macs(model: DiT, plan: Plan, per_class: int, seed: int, cfg_scale: float, factory) -> tuple[float, float]:
    """Mean MACs per image of dynamic gating, from the decisions it made on a subset."""
    from .diffusion import initial_noise
    from .executor import sample

    arch = model.config
    labels = class_labels(arch.num_classes, min(per_class, 10))
    noise = initial_noise(len(labels), (arch.in_channels, arch.input_size, arch.input_size), seed)
    parts = module_macs(arch)
    full_step = plan_macs(arch, Plan.full(1, arch.depth))["macs_per_image"]
    total, skipped, cells = 0.0, 0.0, 0
    records = []
    sample(model, noise, labels, plan, cfg_scale, decider=factory(), on_step=records.append)
    for rec in records:
        step = full_step
        for (b, m), frac in rec.computed.items():
            step -= 2 * (1 - frac) * parts[m]
            skipped += 1 - frac
            cells += 1
        total += step
    return total, skipped / cells


def compare(
    model: DiT, rows: list[Row], per_class: int = 100, seed: int = 0, cfg_scale: float = 1.5, progress: bool = True
) -> dict:
    ref_row = next((r for r in rows if r.policy == "ddim" and r.steps == 50), Row("DDIM-50", "ddim", 50))
    results = []
    ref_result, reference = run_row(model, ref_row, per_class, seed, cfg_scale, None, progress)
    ref_result["psnr_db"] = float("inf")
    for row in rows:
        if row is ref_row:
            results.append(ref_result)
            continue
        if progress:
            print(f"row {row.name}", flush=True)
        result, _ = run_row(model, row, per_class, seed, cfg_scale, reference, progress)
        results.append(result)
    return {"per_class": per_class, "seed": seed, "cfg": cfg_scale, "rows": results}


def to_markdown(report: dict) -> str:
    r0 = report["rows"][0]
    lines = [
        (
            f"Same initial noise for every row; {report['per_class']} samples per class, guidance {report['cfg']}, "
            f"seed {report['seed']}. FD is shown as a multiple of the real-vs-real floor "
            f"(CNN floor {r0['fd_cnn_floor']:.3f}, MLP floor {r0['fd_mlp_floor']:.3f})."
        ),
        "",
        (
            "| sampler | lazy ratio | MACs/image (M) | eager ms/image | class acc | FD CNN (x floor) | FD MLP (x floor) "
            "| PSNR vs DDIM-50 (dB) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        psnr = "-" if r["psnr_db"] == float("inf") else f"{r['psnr_db']:.1f}"
        lines.append(
            f"| {r['name']} | {r['lazy_ratio']:.2f} | {r['macs_per_image'] / 1e6:.0f} | "
            f"{r['eager_ms_per_image']:.2f} | {r['class_accuracy']:.3f} | {r['fd_cnn_ratio']:.2f} | "
            f"{r['fd_mlp_ratio']:.2f} | {psnr} |"
        )
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | Path, command: str) -> None:
    from .files import atomic_write

    out_dir = Path(out_dir)
    text = f"# Equal-latency comparison\n\nRegenerate with:\n\n```sh\n{command}\n```\n\n" + to_markdown(report)
    atomic_write(out_dir / "compare.md", lambda tmp: tmp.write_text(text))
    atomic_write(out_dir / "compare.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))


DRIFT_ROWS = (
    "DDIM-20",
    "LazyDiT-20 @50% +forecast",
    "LazyDiT-20 @50%",
    "LazyDiT-20 @50% local",
    "L2C-20 @50%",
    "FORA-20 n=2 +forecast",
    "random-20 @50%",
)


def drift(model: DiT, rows: list[Row], per_class: int = 10, seed: int = 0, cfg_scale: float = 1.5) -> tuple[dict, dict]:
    """Where a plan leaves the full-compute trajectory: PSNR of the sample after every step against
    the no-skip sampler with the same step count, noise and labels (rows must share a step count).
    Returns the report and each row's final images."""
    from .diffusion import initial_noise
    from .executor import sample
    from .metrics import psnr

    steps = {r.steps for r in rows}
    if len(steps) != 1:
        raise ValueError(f"drift compares rows with one step count, got {sorted(steps)}")
    n = steps.pop()
    arch = model.config
    labels = class_labels(arch.num_classes, per_class)
    noise = initial_noise(len(labels), (arch.in_channels, arch.input_size, arch.input_size), seed)

    def trajectory(plan: Plan) -> list[torch.Tensor]:
        xs = []
        sample(model, noise, labels, plan, cfg_scale, on_step=lambda rec: xs.append(rec.x))
        return xs

    reference = trajectory(Plan.full(n, arch.depth, sampler=model.sampler))
    report, finals = {"steps": n, "per_class": per_class, "seed": seed, "cfg": cfg_scale, "rows": []}, {}
    for row in rows:
        plan = row_plan(model, row)
        xs = trajectory(plan)
        skips = [sum(ch != "C" for cell in plan.cells[k] for ch in cell) for k in range(n)]
        report["rows"].append(
            {
                "name": row.name,
                "skipped_per_step": skips,
                "psnr_per_step_db": [min(psnr(x, r), 99.0) for x, r in zip(xs, reference)],
            }
        )
        finals[row.name] = xs[-1]
    return report, finals


def row_plan(model: DiT, row: Row) -> Plan:
    """The plan a table row samples with (static rows). A search row with ``start: fora`` refines
    the FORA plan of the row's interval, one with ``start: taylorseer`` TaylorSeer's schedule at
    the row's ratio (forecasting in TaylorSeer's basis), each at that plan's own budget."""
    begin = row.params.get("start") if row.policy == "search" else None
    if begin in ("fora", "taylorseer"):
        import tempfile

        basis = "taylor" if begin == "taylorseer" else None
        first = make_plan(
            begin,
            model,
            PlanRequest(
                steps=row.steps,
                interval=row.interval,
                ratio=row.ratio if begin == "taylorseer" else None,
                forecast=begin == "fora",
                forecast_order=row.forecast_order,
            ),
        )
        with tempfile.TemporaryDirectory() as tmp:
            start = Path(tmp) / "start.json"
            first.save(start)
            return make_plan(
                "search",
                model,
                PlanRequest(
                    steps=row.steps,
                    start=str(start),
                    forecast=True,
                    forecast_order=row.forecast_order,
                    forecast_basis=basis,
                    calib_samples=row.params.get("calib_samples", 20),
                    search_rounds=row.params.get("search_rounds", 2),
                    search_transfers=row.params.get("search_transfers", 0),
                    check_samples=row.params.get("check_samples", 0),
                    search_objective=row.params.get("search_objective", "psnr"),
                    seed=row.params.get("seed", 0),
                ),
            )
    gates = None
    if row.policy == "lazydit":
        from .gates import shipped_gates_for

        gates = str(shipped_gates_for(row.steps, row.ratio, "lazydit", row.params.get("objective", "trajectory")))
    return make_plan(
        row.policy,
        model,
        PlanRequest(
            steps=row.steps,
            ratio=row.ratio,
            interval=row.interval,
            budget=row.params.get("budget", "global"),
            gates=gates,
            forecast=row.forecast,
            forecast_order=row.forecast_order,
            search_objective=row.params.get("search_objective", "psnr"),
            seed=row.params.get("seed", 0),
        ),
    )


def write_drift(report: dict, finals: dict, labels: torch.Tensor, out_dir: str | Path, command: str) -> None:
    """drift.json, drift.md (per-step PSNR table) and drift.png (the rows' samples side by side)."""
    import numpy as np

    from .data import to_uint8
    from .files import atomic_write
    from .samples import grid_image, png_bytes

    out_dir = Path(out_dir)
    n = report["steps"]
    lines = [
        "# Per-step drift",
        "",
        "Regenerate with:",
        "",
        f"```sh\n{command}\n```",
        "",
        (
            f"PSNR (dB) of the sample after each step against DDIM-{n} without skips, same noise and labels "
            f"({report['per_class']} per class). Skipped modules per step in the second line of each row. "
            f"`drift.png` shows the final samples side by side, one panel per row, in this order."
        ),
        "",
        "| row | " + " | ".join(str(k) for k in range(n)) + " |",
        "|---|" + "---|" * n,
    ]
    for r in report["rows"]:
        lines.append(f"| {r['name']} | " + " | ".join(f"{v:.0f}" for v in r["psnr_per_step_db"]) + " |")
        lines.append("| skipped | " + " | ".join(str(v) for v in r["skipped_per_step"]) + " |")
    panels = [grid_image(to_uint8(x), labels.numpy(), scale=3) for x in finals.values()]
    gap = np.full((panels[0].shape[0], 12), 255, np.uint8)
    png = png_bytes(np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1))
    atomic_write(out_dir / "drift.png", lambda tmp: tmp.write_bytes(png))
    atomic_write(out_dir / "drift.md", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    atomic_write(out_dir / "drift.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))

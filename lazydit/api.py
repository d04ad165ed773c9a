"""The Python face of every ``lazydit`` command: one function per command, taking the same names
as its flags (a command's settings are the config dataclass its flags are generated from; the
arguments here say where things are). ``lazydit train-gates --steps 20 --out g.safetensors`` is
``api.train_gates(GateTrainConfig(steps=20), out="g.safetensors")``."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from .compare import CompareConfig
from .data import from_uint8
from .distributed import World
from .export.bundle import ExportOptions
from .gates import GateTrainConfig, default_gates_path, load_gates, save_gates
from .macs import plan_record
from .model import DiT
from .pipelines import LoadedModel, ModelSource, load, random_vae
from .plans import Plan
from .policies import PlanRequest, load_plan, make_plan
from .samples import SamplingConfig
from .train import TrainConfig


def train(config: TrainConfig, out: str | Path) -> Path:
    """Train a DiT; returns the written ``model.safetensors``. With ``eval_every`` the EMA weights
    are evaluated on a fixed sample set as training goes (DDIM, the same noise every time: class
    accuracy and FD on both extractors, training and held-out loss), row by row into
    ``out/curve.json``. Under torchrun the global batch is shared out between the processes and
    rank 0 alone evaluates and writes."""
    import json
    import time

    from .files import atomic_write
    from .train import train as run

    curve_path = Path(out) / "curve.json"
    rows: list[dict] = []
    if config.eval_every and curve_path.is_file():  # a resumed run keeps the rows it already has
        rows = json.loads(curve_path.read_text())["rows"]
    started = time.perf_counter()

    def on_eval(step: int, ema: DiT, train_loss: float, held_loss: float | None) -> None:
        from .metrics import evaluate
        from .samples import class_labels, generate

        plan = Plan.full(config.eval_steps, ema.config.depth, sampler=ema.sampler)
        labels = class_labels(ema.config.num_classes, config.eval_per_class)
        samples, _, _ = generate(ema, plan, labels, seed=config.seed, progress=False)
        row = {"step": step, "train_loss": train_loss, "held_out_loss": held_loss}
        if tuple(samples.shape[1:]) == (1, 8, 8):
            row.update(evaluate(samples, labels))
        row["minutes"] = (time.perf_counter() - started) / 60
        rows[:] = [r for r in rows if r["step"] < step] + [row]
        report = {
            "train_config": asdict(config),
            "eval": f"DDIM-{config.eval_steps}, cfg 1.5, {len(labels)} samples, seed {config.seed}",
            "rows": rows,
        }
        atomic_write(curve_path, lambda tmp: tmp.write_text(json.dumps(report, indent=1)))
        _plot_curve(rows, curve_path.with_suffix(".png"))
        fd = {k: f"{row[k]:.3f}" for k in ("fd_cnn_ratio", "fd_mlp_ratio") if k in row}
        print(f"step {step}: train loss {train_loss:.4f}, held-out {held_loss}, FD/floor {fd}", flush=True)

    from .distributed import world

    with world(config.device) as processes:
        return run(config, out, on_eval=on_eval if config.eval_every else None, world=processes)


def _plot_curve(rows: list[dict], path: Path) -> None:
    """FD (both extractors, x floor) and the losses against training steps."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .files import atomic_write

    steps = [r["step"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("fd_cnn_ratio", "FD CNN"), ("fd_mlp_ratio", "FD MLP")):
        if all(key in r for r in rows):
            left.plot(steps, [r[key] for r in rows], marker="o", label=label)
    left.set_xlabel("training steps")
    left.set_ylabel("FD (x real-vs-real floor)")
    left.set_yscale("log")
    left.legend()
    right.plot(steps, [r["train_loss"] for r in rows], marker="o", label="training loss (mean since last)")
    if all(r["held_out_loss"] is not None for r in rows):
        right.plot(steps, [r["held_out_loss"] for r in rows], marker="o", label="held-out loss (fixed set)")
    right.set_xlabel("training steps")
    right.set_ylabel("epsilon MSE")
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write(path, lambda tmp: tmp.write_bytes(buf.getvalue()))


def train_classifiers(seed: int = 0, out: str | Path | None = None) -> dict[str, float]:
    """Train the metric classifiers; returns their held-out accuracy."""
    from .metrics import CLASSIFIER_DIR, save_classifiers

    return save_classifiers(Path(out) if out else CLASSIFIER_DIR, seed=seed)


def model_and_plan(source: ModelSource, config: SamplingConfig) -> tuple[LoadedModel, Plan]:
    """The model and the plan a sampling run uses, checked against each other. A plan file keeps
    the sampler it records, except what the user changes on the command line."""
    loaded = load(source)
    dit = loaded.dit
    if config.plan:
        plan = load_plan(config.plan)
        plan.check_model(dit.config, config.steps)
        plan.sampler = source.sampler(plan.sampler)
    else:
        plan = Plan.full(config.steps or 50, dit.config.depth, sampler=dit.sampler)
    return loaded, plan


def _decider_factory(config: SamplingConfig, model: DiT, plan: Plan, device: torch.device) -> Callable | None:
    """Per-sample gating (``--dynamic``): a fresh decider per batch, computing where a gate scores
    at or above the threshold."""
    if not config.dynamic:
        return None
    path = default_gates_path(plan.steps) if config.dynamic == "default" else config.dynamic
    gates = load_gates(path, model, plan.steps).to(device)
    threshold = config.threshold

    def factory():
        return lambda k, b, m, h: gates.pair_score(k, b, m, h) >= threshold

    return factory


def generate_set(
    source: ModelSource, config: SamplingConfig, world: World | None = None
) -> tuple[np.ndarray, np.ndarray, float, Plan]:
    """uint8 images (decoded by the VAE for a latent model), labels, eager seconds per image, and
    the plan that made them. In a ``world`` of several processes, this process's batches only."""
    from .distributed import best_device
    from .samples import check_showable, generate, to_pictures

    world = world or World(device=best_device(config.device))
    loaded, plan = model_and_plan(source, config)
    check_showable(loaded)
    labels = config.labels(loaded.dit.config.num_classes)
    decider_factory = _decider_factory(config, loaded.dit, plan, world.device)
    loaded.dit.to(world.device)
    if loaded.vae is not None:
        loaded.vae.to(world.device)
    samples, labels, per_image = generate(
        loaded.dit,
        plan,
        labels,
        config.seed,
        config.cfg_scale,
        config.batch_size,
        decider_factory=decider_factory,
        dynamic_forecast=config.forecast_order,
        progress=world.main,
        batches=world.blocks(math.ceil(len(labels) / config.batch_size)),
    )
    return to_pictures(loaded, samples), labels.numpy(), per_image, plan


def sample(
    config: SamplingConfig,
    out: str | Path,
    source: ModelSource | None = None,
    bundle: str | None = None,
    backend: str = "onnxruntime",
) -> tuple[Path, int, float]:
    """Write ``samples.npz``, ``grid.png`` and the FID evaluator's ``samples_NxHxWx3.npz``, eager
    or from a bundle; returns the folder, the number of samples and the seconds per image. Under
    torchrun each process draws its batches into ``out/.shards`` and rank 0 merges them, in global
    order, once every process has finished (``out`` must be on a disk every process sees)."""
    from .distributed import launched, world
    from .samples import sample_bundle, write_adm, write_samples

    if bundle:
        if launched() and int(os.environ["WORLD_SIZE"]) > 1:
            raise ValueError("--bundle sampling runs in one process; start it without torchrun")
        images, labels, per_image = sample_bundle(bundle, backend, config)
    else:
        with world(config.device) as processes:
            images, labels, per_image, _ = generate_set(source or ModelSource(), config, processes)
            if processes.size > 1:
                images, labels = _merge_shards(Path(out), processes, images, labels)
            if not processes.main:
                return Path(out), len(labels), per_image
    write_adm(out, images)
    return write_samples(out, images, labels), len(labels), per_image


def _merge_shards(out: Path, world: World, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every rank's share written to ``out/.shards``; rank 0 gets them all back in rank order
    (rank r drew the r-th run of batches), the other ranks their own."""
    from .files import atomic_write

    shards = out / ".shards"
    mine = shards / f"rank-{world.rank}.npz"

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, images=images, labels=labels)

    atomic_write(mine, write)
    world.barrier()  # every share is on disk (a rank that failed never gets here)
    if not world.main:
        return images, labels
    parts = []
    for rank in range(world.size):
        with np.load(shards / f"rank-{rank}.npz") as data:
            parts.append((data["images"], data["labels"]))
    shutil.rmtree(shards)
    parts = [p for p in parts if len(p[1])]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def evaluate(
    config: SamplingConfig,
    source: ModelSource | None = None,
    samples: str | None = None,
    reference: str | None = None,
) -> dict:
    """Class accuracy, Frechet distance on both extractors and (with ``reference``) PSNR of a
    sample set read from ``samples`` or drawn now."""
    from .metrics import evaluate as measure
    from .samples import read_samples

    if samples:
        images_u8, labels = read_samples(samples)
        result: dict = {"source": str(samples)}
    else:
        images_u8, labels, per_image, plan = generate_set(source or ModelSource(), config)
        result = {
            "steps": plan.steps,
            "policy": plan.policy,
            "cfg": config.cfg_scale,
            "seed": config.seed,
            "eager_ms_per_image": per_image * 1000,
        }
    ref = None
    if reference:
        ref_u8, ref_labels = read_samples(reference)
        if ref_u8.shape != images_u8.shape or not np.array_equal(ref_labels, labels):
            raise ValueError("--reference must hold the same labels and image shape as the samples")
        ref = from_uint8(ref_u8)
    result.update(measure(from_uint8(images_u8), torch.as_tensor(labels), ref))
    return result


def train_gates(
    config: GateTrainConfig, source: ModelSource | None = None, out: str | Path | None = None
) -> tuple[Path, float]:
    """Train gates and write them (default: next to the default model, where ``plan`` looks);
    returns the file and the mean loss of the last iterations. Under torchrun every process trains
    its share of each global batch; rank 0 writes the file once every rank has finished."""
    from .distributed import world
    from .gates import train_gates as fit

    dit = load(source).dit
    shipped = default_gates_path(config.steps, config.kind, config.objective, config.target_ratio)
    path = Path(out or shipped).with_suffix(".safetensors")
    with world(config.device) as processes:
        gates, losses = fit(dit, config, world=processes)
        processes.barrier()  # a rank that failed never gets here, so nothing is written
        if processes.main:
            save_gates(gates, path, dit, config)
    tail = losses[-50:]
    return path, sum(tail) / max(1, len(tail))


def gate_memory(config: GateTrainConfig, source: ModelSource | None = None, processes: int | None = None) -> dict:
    """``train-gates --dry-run``: the per-process memory estimate of this training run (processes:
    torchrun's world size, else 1), without training."""
    import os

    from .distributed import expected_dtype
    from .gates import memory_estimate

    count = processes or int(os.environ.get("WORLD_SIZE", "1"))
    return memory_estimate(load(source).dit.config, config, count, expected_dtype(config.device))


def plan(policy: str, request: PlanRequest, out: str | Path, source: ModelSource | None = None) -> dict:
    """Make a plan with a registered policy and write it with its MAC counts; returns its JSON."""
    from .files import write_json

    dit = load(source).dit
    record = plan_record(dit.config, make_plan(policy, dit, request))
    write_json(out, record)
    return record


def export(
    options: ExportOptions,
    out: str | Path,
    source: ModelSource | None = None,
    plan: str | None = None,
    steps: int | None = None,
    timing_size: str | None = None,
    policy: str | None = None,
    ratio: float | None = None,
    interval: int | None = None,
) -> Path:
    """Write a bundle. Without ``plan`` a no-skip DDIM bundle; with ``timing_size`` a random-weight
    DiT of that registry size with, for latent sizes, a random VAE of the configuration DiT-XL/2
    ships with (timing only), whose plan ``policy`` may make here. Seconds per stage and the
    gate's report land in ``options.timings``."""
    from .export.bundle import export_bundle, timing_model

    source = source or ModelSource()
    if timing_size:
        dit = timing_model(timing_size)
        dit.sampler = source.sampler(dit.sampler)
        loaded = LoadedModel(dit, random_vae() if dit.config.in_channels == 4 else None, timing_only=True)
        options = replace(options, timing_only=True, model_source=f"timing:{timing_size}:0")
        if plan:
            chosen = load_plan(plan)
        else:
            chosen = make_plan(policy or "ddim", dit, PlanRequest(steps=steps or 20, ratio=ratio, interval=interval))
    else:
        if policy or ratio is not None or interval is not None:
            raise ValueError("--policy, --ratio and --interval make a plan for --timing-size only; use `lazydit plan`")
        loaded = load(source)
        options = replace(
            options, timing_only=loaded.timing_only, model_source=source.model, model_size=source.size, vae=source.vae
        )
        dit = loaded.dit
        if plan:
            chosen = load_plan(plan)
            chosen.sampler = source.sampler(chosen.sampler)
            if steps and steps != chosen.steps:
                raise ValueError(f"--steps {steps} contradicts the plan's {chosen.steps} steps")
        else:
            chosen = Plan.full(steps or 50, dit.config.depth, sampler=dit.sampler)
    return export_bundle(dit, chosen, out, options, loaded.vae)


def verify(bundle: str, backend: str = "onnxruntime", threads: int | None = None) -> dict:
    """Replay a bundle's golden vectors on a backend."""
    from .runtime.cli import verify_bundle

    return verify_bundle(bundle, backend, threads)


def compare(
    config: CompareConfig, source: ModelSource | None = None, out: str | Path = "results", command: str = ""
) -> dict:
    """The equal-latency table (or, with ``config.drift``, the per-step drift report) in ``out``."""
    from .compare import compare as table
    from .compare import drift, select_rows, write_drift, write_report
    from .samples import class_labels

    dit = load(source).dit
    if config.frontier:
        from .compare import frontier, frontier_rows

        rows = frontier_rows(config.frontier_steps, config.frontier_ratios, config.frontier_families)
        return frontier(dit, rows, out, command, config.per_class, config.seed, config.cfg_scale)
    rows = select_rows(config.rows, config.drift)
    if config.drift:
        report, finals = drift(dit, rows, config.per_class, config.seed, config.cfg_scale)
        write_drift(report, finals, class_labels(dit.config.num_classes, config.per_class), out, command)
        return report
    report = table(dit, rows, config.per_class, config.seed, config.cfg_scale)
    write_report(report, out, command)
    return report

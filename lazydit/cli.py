"""The ``lazydit`` command. Each subcommand registers its arguments and its action here; the
work itself lives in the library so the Python API and the CLI stay one thing."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

COMMANDS: dict[str, tuple[str, Callable, Callable]] = {}


class UserError(Exception):
    """Bad input: printed as one line, exit code 2."""


def command(name: str, help: str):
    def wrap(fn):
        COMMANDS[name] = (help, fn.add_arguments, fn)
        return fn

    return wrap


def _args(fn: Callable[[argparse.ArgumentParser], None]):
    def deco(run):
        run.add_arguments = fn
        return run

    return deco


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default",
                   help="'default' (the embedded digits DiT) or a checkpoint: lazydit .safetensors, official DiT .pt, "
                        "diffusers DiTTransformer2DModel weights (default: %(default)s)")


def _sampling_args(p: argparse.ArgumentParser, per_class: int) -> None:
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the plan's, else 50)")
    p.add_argument("--cfg", type=float, default=1.5, help="classifier-free guidance scale (default: %(default)s)")
    p.add_argument("--per-class", type=int, default=per_class, help="samples per class (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="noise seed; sample i's noise depends only on (seed, i)")
    p.add_argument("--plan", help="a skip plan JSON (from `lazydit plan`); default: no skipping")
    p.add_argument("--dynamic", metavar="GATES", nargs="?", const="default",
                   help="per-sample lazy gating with a gate file ('default': the shipped gates for --steps)")
    p.add_argument("--threshold", type=float, default=0.5, help="with --dynamic: compute when score >= this")
    p.add_argument("--forecast", action="store_true", help="with --dynamic: forecast skipped modules instead of reuse")


def _write_json(path: str | None, data: dict | list) -> None:
    text = json.dumps(data, indent=2) + "\n"
    if path:
        from .checkpoints import atomic_write

        atomic_write(Path(path), lambda tmp: tmp.write_text(text))
    print(text, end="")


def _quiet_exporters() -> None:
    """The exporters' own deprecation chatter would bury the progress lines; errors still show."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|coremltools|executorch|onnxscript)")
    for name in ("torch.onnx", "torch._export", "torch.export", "coremltools", "executorch", "onnxscript",
                 "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _resolve(args) -> tuple:
    """Model and plan for a sampling command, checked against each other."""
    from .checkpoints import resolve_model
    from .plans import Plan

    model = resolve_model(args.model)
    if args.plan:
        plan = Plan.load(args.plan)
        plan.check_model(model.config, args.steps)
    else:
        plan = Plan.full(args.steps or 50, model.config.depth)
    return model, plan


def _decider_factory(args, model, plan):
    if not getattr(args, "dynamic", None):
        return None
    from .gates import default_gates_path, load_gates

    path = default_gates_path(plan.steps) if args.dynamic == "default" else args.dynamic
    gates = load_gates(path, model, plan.steps)
    threshold = args.threshold

    def factory():
        return lambda k, b, m, h: gates.pair_score(k, b, m, h) >= threshold

    return factory


@command("train", "train a DiT on digits or an image folder (EMA, resumable, fixed seed)")
@_args(lambda p: (
    p.add_argument("--size", default="DiT-Digits", help="model size from the registry (default: %(default)s)"),
    p.add_argument("--dataset", default="digits", help="'digits' or a folder with one subfolder per class"),
    p.add_argument("--image-size", type=int, help="image side for a folder dataset"),
    p.add_argument("--channels", type=int, default=1, choices=(1, 3), help="1 grey, 3 RGB (folder datasets)"),
    p.add_argument("--iterations", type=int, default=8000),
    p.add_argument("--batch", type=int, default=128),
    p.add_argument("--lr", type=float, default=1e-3),
    p.add_argument("--seed", type=int, default=0),
    p.add_argument("--save-dtype", default="float32", choices=("float32", "float16")),
    p.add_argument("--out", required=True, help="run folder: checkpoints and the final model.safetensors"),
))
def cmd_train(args) -> None:
    import torch

    from .data import load_dataset
    from .model import DiT_models, DiTConfig
    from .train import TrainConfig, train

    if args.size not in DiT_models:
        raise UserError(f"unknown size {args.size!r}; choose one of {sorted(DiT_models)}")
    data = load_dataset(args.dataset, args.image_size, args.channels)
    config = DiT_models[args.size]
    if args.dataset != "digits":
        config = DiTConfig.from_dict({**config.to_dict(), "input_size": data.shape[1], "in_channels": data.shape[0],
                                      "num_classes": data.num_classes})
    cfg = TrainConfig(iterations=args.iterations, batch_size=args.batch, lr=args.lr, seed=args.seed)
    path = train(config, data, args.out, cfg, save_dtype=getattr(torch, args.save_dtype))
    print(f"wrote {path}")


@command("train-classifiers", "train the digit classifiers used by the quality metrics")
@_args(lambda p: (p.add_argument("--seed", type=int, default=0),
                  p.add_argument("--out", default=None, help="folder (default: the package's weights folder)")))
def cmd_train_classifiers(args) -> None:
    from .metrics import CLASSIFIER_DIR, save_classifiers

    accs = save_classifiers(Path(args.out) if args.out else CLASSIFIER_DIR, seed=args.seed)
    _write_json(None, {"test_accuracy": accs})


@command("sample", "sample a labelled grid (eager with any plan, or a bundle on a backend); writes samples.npz + grid.png")
@_args(lambda p: (_model_arg(p), _sampling_args(p, 10),
                  p.add_argument("--bundle", help="run this exported bundle instead of the eager model"),
                  p.add_argument("--backend", default="onnxruntime", help="with --bundle: onnxruntime | executorch | "
                                 "torch | coreml"),
                  p.add_argument("--out", required=True, help="output folder")))
def cmd_sample(args) -> None:
    from .samples import generate, save_generated, write_samples

    if args.bundle:
        from .samples import sample_bundle

        images, labels, per_image = sample_bundle(args.bundle, args.backend, args.per_class, args.seed, args.cfg)
        out = write_samples(args.out, images, labels)
        print(f"wrote {out / 'samples.npz'} and {out / 'grid.png'} ({len(labels)} samples, "
              f"{per_image * 1000:.2f} ms per image on {args.backend})")
        return
    model, plan = _resolve(args)
    images, labels, per_image = generate(model, plan, args.per_class, args.seed, args.cfg,
                                         decider_factory=_decider_factory(args, model, plan),
                                         dynamic_forecast=args.forecast)
    out = save_generated(args.out, images, labels)
    print(f"wrote {out / 'samples.npz'} and {out / 'grid.png'} ({len(labels)} samples, "
          f"{per_image * 1000:.2f} ms per image eager)")


@command("eval", "quality of a sample set: class accuracy, Frechet distance (two extractors), PSNR")
@_args(lambda p: (
    p.add_argument("--samples", help="samples.npz (or its folder); without it, sample now with the options below"),
    p.add_argument("--reference", help="samples.npz from the same noise (e.g. DDIM-50) for PSNR"),
    _model_arg(p), _sampling_args(p, 100),
    p.add_argument("--json", help="write the result here too"),
))
def cmd_eval(args) -> None:
    import torch

    from .data import from_uint8, to_uint8
    from .metrics import evaluate
    from .samples import generate, read_samples

    if args.samples:
        images_u8, labels = read_samples(args.samples)
        result = {"source": str(args.samples)}
    else:
        model, plan = _resolve(args)
        images, labels_t, per_image = generate(model, plan, args.per_class, args.seed, args.cfg,
                                               decider_factory=_decider_factory(args, model, plan),
                                               dynamic_forecast=args.forecast)
        images_u8, labels = to_uint8(images), labels_t.numpy()
        result = {"steps": plan.steps, "policy": plan.policy, "cfg": args.cfg, "seed": args.seed,
                  "eager_ms_per_image": per_image * 1000}
    ref = None
    if args.reference:
        ref_u8, ref_labels = read_samples(args.reference)
        if ref_u8.shape != images_u8.shape or not (ref_labels == labels).all():
            raise UserError("--reference must hold the same labels and image shape as the samples")
        ref = from_uint8(ref_u8)
    result.update(evaluate(from_uint8(images_u8), torch.as_tensor(labels), ref))
    _write_json(args.json, result)


@command("train-gates", "train lazy gates (or Learning-to-Cache routers) for DDIM N steps on a frozen DiT")
@_args(lambda p: (
    _model_arg(p),
    p.add_argument("--steps", type=int, required=True, help="DDIM steps the gates are for"),
    p.add_argument("--kind", default="lazydit", choices=("lazydit", "router"),
                   help="lazydit: input-dependent gates; router: Learning-to-Cache's input-invariant router"),
    p.add_argument("--rho-attn", type=float, default=1e-4),
    p.add_argument("--rho-mlp", type=float, default=1e-4),
    p.add_argument("--lr", type=float, help="Adam learning rate (default: 3e-4 trajectory, 5e-3 local)"),
    p.add_argument("--iterations", type=int, help="(default: 400 trajectory, 1500 local)"),
    p.add_argument("--batch", type=int, help="(default: 16 trajectory, 32 local)"),
    p.add_argument("--cfg", type=float, default=1.5),
    p.add_argument("--seed", type=int, default=0),
    p.add_argument("--objective", default="trajectory", choices=("trajectory", "local"),
                   help="trajectory (default): unroll the whole soft-lazy sampler and compare the final sample "
                        "with full compute; local: the one-step loss of the LazyDiT paper"),
    p.add_argument("--target-ratio", type=float,
                   help="adapt rho during training until the mean score gives this lazy ratio "
                        "(default: 0.5 trajectory, fixed rho local)"),
    p.add_argument("--pool", type=int, default=512,
                   help="trajectory objective: reference trajectories (noise, label, full-compute sample)"),
    p.add_argument("--forecast", action="store_true",
                   help="trajectory objective: skipped modules are forecast (for plans made with --forecast)"),
    p.add_argument("--out", help="gate file (default: next to the default model, where `lazydit plan` looks)"),
))
def cmd_train_gates(args) -> None:
    from .checkpoints import resolve_model
    from .data import digits
    from .gates import GateTrainConfig, default_gates_path, save_gates, train_gates

    model = resolve_model(args.model)
    trajectory = args.objective == "trajectory"
    defaults = {"lr": 3e-4, "iterations": 400, "batch": 16, "target_ratio": 0.5} if trajectory else \
        {"lr": 5e-3, "iterations": 1500, "batch": 32, "target_ratio": None}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    cfg = GateTrainConfig(kind=args.kind, rho_attn=args.rho_attn, rho_mlp=args.rho_mlp, lr=args.lr,
                          iterations=args.iterations, batch_size=args.batch, cfg_scale=args.cfg, seed=args.seed,
                          objective=args.objective, target_ratio=args.target_ratio, pool=args.pool,
                          forecast=args.forecast)
    gates, losses = train_gates(model, None if trajectory else digits("train"), args.steps, cfg)
    out = args.out or default_gates_path(args.steps, args.kind, args.objective)
    path = save_gates(gates, out, model, cfg)
    print(f"wrote {path} (final mse {sum(losses[-50:]) / max(1, len(losses[-50:])):.3e})")


@command("plan", "make a skip plan with a caching policy (lazydit, l2c, fora, random, ddim)")
@_args(lambda p: (
    _model_arg(p),
    p.add_argument("--policy", required=True, help="lazydit | l2c | fora | random | ddim"),
    p.add_argument("--steps", type=int, required=True, help="DDIM steps"),
    p.add_argument("--ratio", type=float, help="lazy ratio to hit exactly (skipped modules / all modules)"),
    p.add_argument("--threshold", type=float, help="lazydit/l2c: skip cells whose mean score is below this"),
    p.add_argument("--interval", type=int, help="fora: recompute every n-th step"),
    p.add_argument("--forecast", action="store_true", help="forecast skipped modules instead of reusing them"),
    p.add_argument("--gates", help="gate file (default: the shipped gates for --steps)"),
    p.add_argument("--calib-per-class", type=int, default=4, help="lazydit calibration trajectories per class"),
    p.add_argument("--budget", default="global", choices=("global", "per-step"),
                   help="lazydit/l2c: rank every cell together, or skip the same number in every step"),
    p.add_argument("--seed", type=int, default=0),
    p.add_argument("--out", required=True, help="plan JSON to write"),
))
def cmd_plan(args) -> None:
    from .checkpoints import resolve_model
    from .policies import PlanRequest, make_plan

    model = resolve_model(args.model)
    req = PlanRequest(steps=args.steps, ratio=args.ratio, threshold=args.threshold, interval=args.interval,
                      seed=args.seed, gates_path=args.gates, calib_per_class=args.calib_per_class,
                      budget=args.budget)
    plan = make_plan(args.policy, model, req)
    if args.forecast:
        plan = plan.with_forecast()
    plan.save(args.out, model.config)
    data = plan.to_dict(model.config)
    print(f"wrote {args.out}: {args.policy} DDIM-{plan.steps}, {data['skipped']} modules skipped, lazy ratio "
          f"{data['lazy_ratio']['modules']:.3f} by modules, {data['lazy_ratio']['macs']:.3f} by MACs")


@command("export", "bake a plan into per-step graphs and write a bundle (ExecuTorch, Core ML, ONNX)")
@_args(lambda p: (
    _model_arg(p),
    p.add_argument("--plan", help="plan JSON; without it a no-skip DDIM bundle"),
    p.add_argument("--steps", type=int, help="DDIM steps when there is no plan (default 50)"),
    p.add_argument("--formats", default="executorch,coreml,onnx", help="comma-separated (default: %(default)s)"),
    p.add_argument("--timing-size", metavar="SIZE",
                   help="instead of --model: a random-weight DiT of this registry size (e.g. DiT-B/2), "
                        "for latency measurement only"),
    p.add_argument("--policy", help="with --timing-size: make the plan here (fora, random, ddim)"),
    p.add_argument("--ratio", type=float, help="with --timing-size --policy random: lazy ratio"),
    p.add_argument("--interval", type=int, help="with --timing-size --policy fora: interval"),
    p.add_argument("--label", type=int, default=0, help="class of the golden sample"),
    p.add_argument("--cfg", type=float, default=1.5, help="guidance scale of the golden sample"),
    p.add_argument("--seed", type=int, default=0, help="noise seed of the golden sample"),
    p.add_argument("--no-check", action="store_true", help="skip the correctness gate (not recommended)"),
    p.add_argument("--force", action="store_true", help="replace an existing bundle"),
    p.add_argument("--out", required=True, help="bundle folder"),
))
def cmd_export(args) -> None:
    _quiet_exporters()
    from .checkpoints import resolve_model
    from .export.bundle import ExportOptions, export_bundle, timing_model
    from .plans import Plan
    from .policies import PlanRequest, make_plan

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    if args.timing_size:
        model = timing_model(args.timing_size)
        source = f"timing:{args.timing_size}:0"
        if args.plan:
            plan = Plan.load(args.plan)
        else:
            req = PlanRequest(steps=args.steps or 20, ratio=args.ratio, interval=args.interval)
            plan = make_plan(args.policy or "ddim", model, req)
    else:
        model = resolve_model(args.model)
        source = args.model
        plan = Plan.load(args.plan) if args.plan else Plan.full(args.steps or 50, model.config.depth)
        if args.plan and args.steps and args.steps != plan.steps:
            raise UserError(f"--steps {args.steps} contradicts the plan's {plan.steps} steps")
    options = ExportOptions(formats=formats, label=args.label, cfg_scale=args.cfg, seed=args.seed, force=args.force,
                            check=not args.no_check, timing_only=bool(args.timing_size), model_source=source)
    out = export_bundle(model, plan, args.out, options)
    t = options.timings
    print(f"wrote {out} in {t['total_s']:.1f} s: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()
                                                               if k.endswith("_s") and k != "total_s"))
    gate = t.get("gate", {})
    for fmt, res in gate.items():
        if "min_psnr_db" in res:
            print(f"  {fmt}: golden replay min PSNR {res['min_psnr_db']:.1f} dB")
        else:
            print(f"  {fmt}: spec checked ({res['functions']} functions)")


@command("verify", "replay a bundle's golden vectors on a backend and report per-step PSNR")
@_args(lambda p: (
    p.add_argument("--bundle", required=True),
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime | executorch | torch | coreml"),
    p.add_argument("--threads", type=int),
    p.add_argument("--json", help="write the report here too"),
))
def cmd_verify(args) -> None:
    from .runtime.cli import verify_bundle

    result = verify_bundle(args.bundle, args.backend, args.threads)
    _write_json(args.json, result)
    if not result["passed"]:
        raise UserError(f"{args.backend} does not reproduce the golden vectors ({result['min_psnr_db']:.1f} dB < 40)")


@command("bench", "time a bundle like phone benchmarks do; with --baseline, the speedup against its ideal")
@_args(lambda p: (
    p.add_argument("--bundle", required=True),
    p.add_argument("--baseline", help="a no-skip bundle of the same model and steps, timed interleaved"),
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime | executorch | torch | coreml"),
    p.add_argument("--threads", type=int, help="intra-op threads (default: the backend's)"),
    p.add_argument("--profile", help="a device profile (threads + CPU affinity): flagship-2024, midrange, budget"),
    p.add_argument("--warmup", type=int, default=2),
    p.add_argument("--runs", type=int, default=10),
    p.add_argument("--json", help="write the report here"),
    p.add_argument("--plot", help="write a per-step latency PNG here"),
))
def cmd_bench(args) -> None:
    from tqdm import tqdm

    from .runtime.bench import bench, plot_steps

    threads = args.threads
    if args.profile:
        from .runtime.device import apply_profile

        threads = apply_profile(args.profile)
    bar = tqdm(total=args.runs * (2 if args.baseline else 1), desc="bench", unit="image")

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    report = bench(args.bundle, args.backend, args.baseline, threads, args.warmup, args.runs, progress)
    bar.close()
    if args.profile:
        report["profile"] = args.profile
    if args.plot:
        plot_steps(report, args.plot)
    _write_json(args.json, report)


@command("device", "an emulated ARM64 phone: prepare the userland, run a bundle there")
@_args(lambda p: (
    p.add_argument("action", choices=("prepare", "run", "profiles")),
    p.add_argument("--arch", default="arm64", help="only arm64 is supported"),
    p.add_argument("--bundle", help="run: the bundle"),
    p.add_argument("--baseline", help="run: a no-skip bundle for the lazy/full latency ratio"),
    p.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "executorch")),
    p.add_argument("--runs", type=int, default=3),
    p.add_argument("--count-instructions", action="store_true", help="run: also count guest instructions per image"),
    p.add_argument("--cache-dir", help="where the userland lives (default ~/.cache/lazydit/device/<arch>)"),
    p.add_argument("--json", help="write the report here"),
))
def cmd_device(args) -> None:
    from .runtime import device

    if args.action == "profiles":
        for prof in device.PROFILES.values():
            print(f"{prof.name:15s} {prof.threads} threads  {prof.description}")
        return
    root = device.prepare(args.arch, Path(args.cache_dir) if args.cache_dir else None, executorch=True)
    if args.action == "prepare":
        print(f"userland ready at {root}")
        return
    if not args.bundle:
        raise UserError("device run needs --bundle")
    from .runtime.device_run import run_on_device

    report = run_on_device(root, args.bundle, args.backend, args.baseline, args.runs, args.count_instructions)
    _write_json(args.json, report)
    if not report["parity"]["passed"]:
        raise UserError(f"the emulated device does not reproduce the golden vectors "
                        f"({report['parity']['min_psnr_db']:.1f} dB < 40)")


@command("compare", "the equal-latency table: every policy, same noise, quality and MACs (Markdown + JSON)")
@_args(lambda p: (
    _model_arg(p),
    p.add_argument("--per-class", type=int, default=100, help="samples per class per row (default: %(default)s)"),
    p.add_argument("--seed", type=int, default=0),
    p.add_argument("--cfg", type=float, default=1.5),
    p.add_argument("--rows", help="comma-separated row names to run (default: all); DDIM-50 always runs"),
    p.add_argument("--drift", action="store_true",
                   help="instead of the table: per-step PSNR against the no-skip sampler and the samples side by "
                        "side (drift.md, drift.json, drift.png) for 20-step rows (default: DDIM-20, LazyDiT "
                        "with and without forecast, the paper's local recipe, L2C, FORA + forecast, random)"),
    p.add_argument("--out", default="results", help="folder for compare.md and compare.json"),
))
def cmd_compare(args) -> None:
    from .checkpoints import resolve_model
    from .compare import DRIFT_ROWS, compare, default_rows, drift, to_markdown, write_drift, write_report

    command = "lazydit " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["compare"] else "lazydit compare"
    rows = default_rows()
    if args.drift:
        wanted = [r.strip() for r in args.rows.split(",")] if args.rows else list(DRIFT_ROWS)
        by_name = {r.name: r for r in rows}
        unknown = [w for w in wanted if w not in by_name or by_name[w].dynamic]
        if unknown:
            raise UserError(f"unknown or dynamic rows {unknown}; known: {[r.name for r in rows if not r.dynamic]}")
        from .samples import class_labels

        model = resolve_model(args.model)
        report, finals = drift(model, [by_name[w] for w in wanted], args.per_class, args.seed, args.cfg)
        write_drift(report, finals, class_labels(model.config.num_classes, args.per_class), args.out, command)
        print(f"wrote {args.out}/drift.md, drift.json, drift.png")
        return
    if args.rows:
        wanted = {r.strip() for r in args.rows.split(",")}
        unknown = wanted - {r.name for r in rows}
        if unknown:
            raise UserError(f"unknown rows {sorted(unknown)}; known: {[r.name for r in rows]}")
        rows = [r for r in rows if r.name in wanted or r.name == "DDIM-50"]
    report = compare(resolve_model(args.model), rows, args.per_class, args.seed, args.cfg)
    write_report(report, args.out, command)
    print(to_markdown(report))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lazydit",
                                     description="Lazy learning for Diffusion Transformers, exported for phones.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _, _, run = COMMANDS[args.command]
    from .checkpoints import CheckpointError
    from .export.bundle import ExportError
    from .plans import PlanError
    from .runtime.device import DeviceError

    try:
        run(args)
    except (UserError, CheckpointError, PlanError, ExportError, DeviceError, FileNotFoundError, ValueError) as err:
        print(f"lazydit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``lazydit`` command: each subcommand parses its arguments and calls one function of
:mod:`lazydit.api` with the same names. A command's settings are a config dataclass whose fields
generate its flags, so defaults live in one place (see :mod:`lazydit.options`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .options import add_options, from_args
from .registry import Registry


class UserError(Exception):
    """Bad input: printed as one line, exit code 2."""


# name -> (help, add_arguments, run)
COMMANDS: Registry[tuple[str, Callable, Callable]] = Registry("command", UserError)


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]):
    def wrap(run):
        COMMANDS.register(name)((help, arguments, run))
        return run

    return wrap


def _model_arg(p: argparse.ArgumentParser) -> None:
    from .pipelines import ModelSource

    add_options(p, ModelSource)


def _source(args):
    from .pipelines import ModelSource

    return from_args(ModelSource, args)


def _write_json(path: str | None, data: dict | list) -> None:
    from .files import write_json

    if path:
        write_json(path, data)
    print(json.dumps(data, indent=2))


def _quiet_exporters() -> None:
    """The exporters' own deprecation chatter would bury the progress lines; errors still show."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|coremltools|executorch|onnxscript)")
    for name in (
        "torch.onnx",
        "torch._export",
        "torch.export",
        "coremltools",
        "executorch",
        "onnxscript",
        "torch.utils._pytree",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)


def _train_args(p: argparse.ArgumentParser) -> None:
    from .train import TrainConfig

    add_options(p, TrainConfig)
    p.add_argument("--out", required=True, help="run folder: checkpoints and the final model.safetensors")


@command("train", "train a DiT on digits or an image folder (EMA, resumable, fixed seed)", _train_args)
def cmd_train(args) -> None:
    from . import api
    from .distributed import rank_is_main
    from .train import TrainConfig

    path = api.train(from_args(TrainConfig, args), args.out)
    if rank_is_main():
        print(f"wrote {path}")


def _classifier_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder (default: the package's weights folder)")


@command("train-classifiers", "train the digit classifiers used by the quality metrics", _classifier_args)
def cmd_train_classifiers(args) -> None:
    from . import api

    _write_json(None, {"test_accuracy": api.train_classifiers(args.seed, args.out)})


def _sample_args(p: argparse.ArgumentParser) -> None:
    from .samples import SamplingConfig

    _model_arg(p)
    add_options(p, SamplingConfig)
    p.add_argument("--bundle", help="run this exported bundle instead of the eager model")
    p.add_argument("--backend", default="onnxruntime", help="with --bundle: onnxruntime | executorch | torch | coreml")
    p.add_argument("--out", required=True, help="output folder")


@command(
    "sample",
    "sample a labelled grid (eager with any plan, or a bundle on a backend); writes samples.npz + grid.png",
    _sample_args,
)
def cmd_sample(args) -> None:
    from . import api
    from .distributed import rank_is_main
    from .samples import SamplingConfig

    out, count, per_image = api.sample(
        from_args(SamplingConfig, args), args.out, _source(args), args.bundle, args.backend
    )
    where = args.backend if args.bundle else "eager"
    if rank_is_main():
        adm = next(out.glob(f"samples_{count}x*.npz"))
        print(
            f"wrote {out / 'samples.npz'}, {out / 'grid.png'} and {adm} ({count} samples, "
            f"{per_image * 1000:.2f} ms per image {where})"
        )


def _eval_args(p: argparse.ArgumentParser) -> None:
    from .samples import EvalConfig

    p.add_argument("--samples", help="samples.npz (or its folder); without it, sample now with the options below")
    p.add_argument("--reference", help="samples.npz from the same noise (e.g. DDIM-50) for PSNR")
    _model_arg(p)
    add_options(p, EvalConfig)
    p.add_argument("--json", help="write the result here too")


@command("eval", "quality of a sample set: class accuracy, Frechet distance (two extractors), PSNR", _eval_args)
def cmd_eval(args) -> None:
    from . import api
    from .samples import EvalConfig

    _write_json(args.json, api.evaluate(from_args(EvalConfig, args), _source(args), args.samples, args.reference))


def _gate_args(p: argparse.ArgumentParser) -> None:
    from .gates import GateTrainConfig

    _model_arg(p)
    add_options(p, GateTrainConfig)
    p.add_argument("--out", help="gate file (default: next to the default model, where `lazydit plan` looks)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the memory one process will need (model, steps, batch, processes under torchrun) and stop",
    )
    p.add_argument(
        "--processes", type=int, help="with --dry-run: estimate for this many processes (default: torchrun's, else 1)"
    )


@command("train-gates", "train lazy gates (or Learning-to-Cache routers) for DDIM N steps on a frozen DiT", _gate_args)
def cmd_train_gates(args) -> None:
    from . import api
    from .distributed import rank_is_main
    from .gates import GateTrainConfig

    config = from_args(GateTrainConfig, args)
    if args.dry_run:
        estimate = api.gate_memory(config, _source(args), args.processes)
        if rank_is_main():
            _write_json(None, estimate)
        return
    path, mse = api.train_gates(config, _source(args), args.out)
    if rank_is_main():
        print(f"wrote {path} (final mse {mse:.3e})")


def _plan_args(p: argparse.ArgumentParser) -> None:
    from .policies import POLICIES, PlanRequest

    _model_arg(p)
    p.add_argument("--policy", required=True, help=f"the caching policy: {', '.join(sorted(POLICIES))}")
    add_options(p, PlanRequest)
    p.add_argument("--out", required=True, help="plan JSON to write")


@command(
    "plan", "make a skip plan with a caching policy (lazydit, l2c, fora, taylorseer, search, random, ddim)", _plan_args
)
def cmd_plan(args) -> None:
    from . import api
    from .policies import PlanRequest

    data = api.plan(args.policy, from_args(PlanRequest, args), args.out, _source(args))
    print(
        f"wrote {args.out}: {args.policy} DDIM-{data['sampler']['steps']}, {data['skipped']} modules skipped, "
        f"lazy ratio {data['lazy_ratio']['modules']:.3f} by modules, {data['lazy_ratio']['macs']:.3f} by MACs"
    )


def _export_args(p: argparse.ArgumentParser) -> None:
    from .export.bundle import ExportOptions

    _model_arg(p)
    p.add_argument("--plan", help="plan JSON; without it a no-skip DDIM bundle")
    p.add_argument("--steps", type=int, help="DDIM steps when there is no plan (default 50; 20 with --timing-size)")
    p.add_argument(
        "--timing-size",
        metavar="SIZE",
        help="instead of --model: a random-weight DiT of this registry size (e.g. DiT-B/2), for latency measurement only",
    )
    p.add_argument("--policy", help="with --timing-size: make the plan here (fora, random, ddim)")
    p.add_argument("--ratio", type=float, help="with --timing-size --policy random: lazy ratio")
    p.add_argument("--interval", type=int, help="with --timing-size --policy fora: interval")
    add_options(p, ExportOptions)
    p.add_argument("--out", required=True, help="bundle folder")


@command("export", "bake a plan into per-step graphs and write a bundle (ExecuTorch, Core ML, ONNX)", _export_args)
def cmd_export(args) -> None:
    _quiet_exporters()
    from . import api
    from .export.bundle import ExportOptions

    options = from_args(ExportOptions, args)
    out = api.export(
        options,
        args.out,
        _source(args),
        args.plan,
        args.steps,
        args.timing_size,
        args.policy,
        args.ratio,
        args.interval,
    )
    t = options.timings
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in t.items() if k.endswith("_s") and k != "total_s")
    print(f"wrote {out} in {t['total_s']:.1f} s: {stages}")
    for fmt, res in t.get("gate", {}).items():
        if "min_psnr_db" in res:
            print(f"  {fmt}: golden replay min PSNR {res['min_psnr_db']:.1f} dB")
        else:
            print(f"  {fmt}: spec checked ({res['functions']} functions)")


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True)
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime | executorch | torch | coreml")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", help="write the report here too")


@command("verify", "replay a bundle's golden vectors on a backend and report per-step PSNR", _verify_args)
def cmd_verify(args) -> None:
    from . import api
    from .runtime.loop import PARITY_DB

    result = api.verify(args.bundle, args.backend, args.threads)
    _write_json(args.json, result)
    if not result["passed"]:
        raise UserError(
            f"{args.backend} does not reproduce the golden vectors ({result['min_psnr_db']:.1f} dB < {PARITY_DB:.0f})"
        )


def _bench_args(p: argparse.ArgumentParser) -> None:
    from .runtime.bench import BenchConfig

    p.add_argument("--bundle", required=True)
    p.add_argument("--baseline", help="a no-skip bundle of the same model and steps, timed interleaved")
    add_options(p, BenchConfig)
    p.add_argument("--profile", help="a device profile (threads + CPU affinity): flagship-2024, midrange, budget")
    p.add_argument("--json", help="write the report here")
    p.add_argument("--plot", help="write a per-step latency PNG here")


@command("bench", "time a bundle like phone benchmarks do; with --baseline, the speedup against its ideal", _bench_args)
def cmd_bench(args) -> None:
    from tqdm import tqdm

    from . import export as _registers_the_torch_backend  # noqa: F401
    from .runtime.bench import BenchConfig, bench, plot_steps

    config = from_args(BenchConfig, args)
    if args.profile:
        from .device.profiles import apply_profile

        config.threads = apply_profile(args.profile)
    bar = tqdm(total=config.runs * (2 if args.baseline else 1), desc="bench", unit="image")
    report = bench(args.bundle, config, args.baseline, lambda done, total: bar.update(done - bar.n))
    bar.close()
    if args.profile:
        report["profile"] = args.profile
    if args.plot:
        plot_steps(report, args.plot)
    _write_json(args.json, report)


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("prepare", "run", "profiles"))
    p.add_argument("--arch", default="arm64", help="only arm64 is supported")
    p.add_argument("--bundle", help="run: the bundle")
    p.add_argument("--baseline", help="run: a no-skip bundle for the lazy/full latency ratio")
    p.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "executorch"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--count-instructions", action="store_true", help="run: also count guest instructions per image")
    p.add_argument(
        "--native",
        action="store_true",
        help="run: the aarch64 native runner (runtime/native, ExecuTorch's C++ Module API), no Python in the guest",
    )
    p.add_argument("--cache-dir", help="where the userland lives (default ~/.cache/lazydit/device/<arch>)")
    p.add_argument("--json", help="write the report here")


@command("device", "an emulated ARM64 phone: prepare the userland, run a bundle there", _device_args)
def cmd_device(args) -> None:
    from . import device

    if args.action == "profiles":
        for prof in device.PROFILES.values():
            print(f"{prof.name:15s} {prof.threads} threads  {prof.description}")
        return
    if args.action == "run" and args.native:
        if not args.bundle:
            raise UserError("device run needs --bundle")
        from .device.native import run_native_on_device

        report = run_native_on_device(args.bundle, args.baseline, args.runs, args.count_instructions)
        _write_json(args.json, report)
        _check_device_parity(report)
        return
    root = device.prepare(args.arch, Path(args.cache_dir) if args.cache_dir else None, executorch=True)
    if args.action == "prepare":
        print(f"userland ready at {root}")
        return
    if not args.bundle:
        raise UserError("device run needs --bundle")
    from .device.run import run_on_device

    report = run_on_device(root, args.bundle, args.backend, args.baseline, args.runs, args.count_instructions)
    _write_json(args.json, report)
    _check_device_parity(report)


def _check_device_parity(report: dict) -> None:
    if not report["parity"]["passed"]:
        raise UserError(
            f"the emulated device does not reproduce the golden vectors "
            f"({report['parity']['min_psnr_db']:.1f} dB < {report['parity']['floor_db']:.0f})"
        )


def _compare_args(p: argparse.ArgumentParser) -> None:
    from .compare import CompareConfig

    _model_arg(p)
    add_options(p, CompareConfig)
    p.add_argument("--out", default="results", help="folder for the report (default: %(default)s)")


@command(
    "compare", "the equal-latency table: every policy, same noise, quality and MACs (Markdown + JSON)", _compare_args
)
def cmd_compare(args) -> None:
    from . import api
    from .compare import CompareConfig, to_markdown

    command_line = "lazydit " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["compare"] else "lazydit compare"
    config = from_args(CompareConfig, args)
    report = api.compare(config, _source(args), args.out, command_line)
    if config.frontier:
        print(f"wrote {args.out}/frontier.md, frontier.json, frontier.png ({len(report['rows'])} rows)")
    elif config.drift:
        print(f"wrote {args.out}/drift.md, drift.json, drift.png")
    else:
        print(to_markdown(report))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or only ``command``'s flags ("": none): each command's options come
    from its library's config dataclass, and importing every library costs seconds."""
    parser = argparse.ArgumentParser(
        prog="lazydit", description="Lazy learning for Diffusion Transformers, exported for phones."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command in (None, name):
            add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    # no command given: only the list of commands is shown, no command's flags are needed
    args = build_parser(chosen if chosen in COMMANDS else "").parse_args(argv)
    _, _, run = COMMANDS[args.command]
    from .checkpoints import CheckpointError
    from .device import DeviceError
    from .distributed import rank_label
    from .export.formats import ExportError
    from .gates import GateError
    from .plans import PlanError

    try:
        run(args)
    except (
        UserError,
        CheckpointError,
        PlanError,
        GateError,
        ExportError,
        DeviceError,
        FileNotFoundError,
        ValueError,
    ) as err:
        print(f"lazydit {args.command}: error: {rank_label()}{err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

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


@command("sample", "sample a labelled grid from a model (eager, any plan) and write samples.npz + grid.png")
@_args(lambda p: (_model_arg(p), _sampling_args(p, 10),
                  p.add_argument("--out", required=True, help="output folder")))
def cmd_sample(args) -> None:
    from .samples import generate, save_generated

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
    from .plans import PlanError

    try:
        run(args)
    except (UserError, CheckpointError, PlanError, FileNotFoundError, ValueError) as err:
        print(f"lazydit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

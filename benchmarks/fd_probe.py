"""Why can a lazy plan score a lower FD than the full-compute sampler it approximates?

For one model, from the same noise (sample i from (seed, i)), this measures DDIM-50 at several
guidance scales, DDIM-50 from a second noise seed (how far FD moves from the sample set alone),
and a few 50-step lazy plans; for each: PSNR against DDIM-50 at the reference guidance, class
accuracy, FD on both extractors split into its mean and covariance terms, and sample statistics
beside the real test digits' (pixels at the clamp, mean intensity, high-frequency energy).

A lower FD with a lower PSNR means the plan moved its samples somewhere the feature statistics
like better, not closer to what the model computes: if guidance does the same, the lazy error
acts as weaker guidance. Nothing here passes or fails; it writes JSON and a Markdown table.

  python benchmarks/fd_probe.py --out results/fd-probe        # the default model, 100 per class
  python benchmarks/fd_probe.py --per-class 10 --out /tmp/fd    # smoke
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def fd_terms(a: np.ndarray, b: np.ndarray) -> dict:
    """Frechet distance split: |mu_a - mu_b|^2 and the covariance term."""
    from lazydit.metrics import frechet_distance

    mean = float(np.sum((a.mean(0) - b.mean(0)) ** 2))
    total = frechet_distance(a, b)
    return {"fd": total, "mean_term": mean, "cov_term": total - mean}


def statistics(images: torch.Tensor) -> dict:
    x = images.clamp(-1, 1)
    lap = x[..., 1:-1, 1:-1] * 4 - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return {
        "at_clamp": float(((x.abs() > 0.98).float()).mean()),
        "mean_intensity": float(x.mean()),
        "pixel_std": float(x.std()),
        "high_freq_energy": float((lap**2).mean()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cfg", type=float, default=1.5, help="the reference guidance scale")
    parser.add_argument("--cfg-scales", default="1.0,1.25,1.5,2.0")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    from lazydit.data import digits
    from lazydit.files import atomic_write
    from lazydit.metrics import EXTRACTORS, class_accuracy, features, psnr, reference
    from lazydit.pipelines import ModelSource, load
    from lazydit.plans import Plan
    from lazydit.policies import PlanRequest, make_plan
    from lazydit.samples import class_labels, generate

    model = load(ModelSource(model=args.model)).dit
    labels = class_labels(model.config.num_classes, args.per_class)
    ref = reference()
    full = Plan.full(50, model.config.depth, sampler=model.sampler)

    def measure(name: str, images: torch.Tensor, against: torch.Tensor | None) -> dict:
        row = {"name": name, "class_accuracy": class_accuracy(images, labels), **statistics(images)}
        if against is not None:
            row["psnr_db"] = psnr(images, against)
        for kind in EXTRACTORS:
            terms = fd_terms(features(images, kind), ref.test[kind])
            row.update({f"{kind}_{k}": v / ref.floor[kind] for k, v in terms.items()})
        print(
            f"{name:34s} psnr {row.get('psnr_db', float('inf')):6.2f}  FD cnn {row['cnn_fd']:.2f} "
            f"(mean {row['cnn_mean_term']:.2f})  mlp {row['mlp_fd']:.2f}  clamp {row['at_clamp']:.3f}  "
            f"hf {row['high_freq_energy']:.4f}",
            flush=True,
        )
        return row

    rows = []
    base, _, _ = generate(model, full, labels, args.seed, args.cfg, progress=False)
    rows.append(measure(f"DDIM-50 cfg {args.cfg}", base, None))
    other, _, _ = generate(model, full, labels, args.seed + 1, args.cfg, progress=False)
    rows.append(measure(f"DDIM-50 cfg {args.cfg}, noise seed {args.seed + 1}", other, None))
    for scale in (float(s) for s in args.cfg_scales.split(",")):
        if scale != args.cfg:
            images, _, _ = generate(model, full, labels, args.seed, scale, progress=False)
            rows.append(measure(f"DDIM-50 cfg {scale}", images, base))
    plans = [
        ("FORA-50 n=2 +forecast", "fora", PlanRequest(steps=50, interval=2, forecast=True)),
        ("LazyDiT-50 @50% +forecast", "lazydit", PlanRequest(steps=50, ratio=0.5, forecast=True)),
        ("random-50 @50%", "random", PlanRequest(steps=50, ratio=0.5)),
        ("FORA-50 n=4 +forecast", "fora", PlanRequest(steps=50, interval=4, forecast=True)),
    ]
    for name, policy, request in plans:
        try:
            plan = make_plan(policy, model, request)
        except ValueError as err:  # no shipped gates for another model
            print(f"{name}: skipped ({err})", file=sys.stderr)
            continue
        images, _, _ = generate(model, plan, labels, args.seed, args.cfg, progress=False)
        rows.append(measure(name, images, base))
    test = digits("test").images
    real = {"name": "real test digits", **statistics(test)}
    train_feats = {k: features(digits("train").images, k) for k in EXTRACTORS}
    for kind in EXTRACTORS:
        terms = fd_terms(train_feats[kind], ref.test[kind])
        real.update({f"{kind}_{k}": v / ref.floor[kind] for k, v in terms.items()})
    rows.append(real)

    out = Path(args.out)
    report = {"model": args.model, "per_class": args.per_class, "seed": args.seed, "cfg": args.cfg, "rows": rows}
    lines = [
        "# FD against fidelity",
        "",
        f"`python benchmarks/fd_probe.py --model {args.model} --per-class {args.per_class} --out {args.out}`",
        "",
        (
            "FD terms as multiples of the real-vs-real floor; PSNR against DDIM-50 at the reference guidance "
            f"({args.cfg}) from the same noise; 'real test digits' is the train split against the test split."
        ),
        "",
        (
            "| samples | PSNR (dB) | class acc | FD CNN | CNN mean term | FD MLP | MLP mean term | at clamp | "
            "mean | std | HF energy |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        psnr_text = f"{r['psnr_db']:.2f}" if "psnr_db" in r else "-"
        acc = f"{r['class_accuracy']:.3f}" if "class_accuracy" in r else "-"
        lines.append(
            f"| {r['name']} | {psnr_text} | {acc} | {r['cnn_fd']:.2f} | {r['cnn_mean_term']:.2f} | {r['mlp_fd']:.2f} | "
            f"{r['mlp_mean_term']:.2f} | {r['at_clamp']:.3f} | {r['mean_intensity']:.3f} | {r['pixel_std']:.3f} | "
            f"{r['high_freq_energy']:.4f} |"
        )
    atomic_write(out.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"))
    atomic_write(out.with_suffix(".md"), lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    print(f"wrote {out.with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Analytic multiply-accumulate counts from the model config.

Counted: every matmul and convolution (what dominates a DiT), plus the forecast arithmetic of
forecasting cells: per order, one divided difference to keep (a subtract and a scale, at the
computing step) and one multiply-add, 2 MACs per element, so a forecast of order k costs 2k.
Elementwise work (norms, activations, softmax) is not counted. Per image means one sample with
classifier-free guidance: two DiT forwards (class and null class) per step.
"""

from __future__ import annotations

from .model import DiTConfig
from .plans import COMPUTE, Plan

FREQ_DIM = 256


def module_macs(config: DiTConfig) -> dict[str, int]:
    """MACs of one forward of one sample, per part."""
    n, d, h = config.num_tokens, config.hidden_size, config.mlp_hidden
    p = config.patch_size
    return {
        "embed": n * d * config.in_channels * p * p + FREQ_DIM * d + d * d,
        "adaln": d * 6 * d,
        "attn": 4 * n * d * d + 2 * n * n * d,
        "mlp": 2 * n * d * h,
        "forecast": 2 * n * d,  # per forecast order
        "final": d * 2 * d + n * d * p * p * config.out_channels,
    }


def step_macs(config: DiTConfig, plan: Plan, step: int) -> int:
    """MACs of one step for one image (class + null class forwards)."""
    parts = module_macs(config)
    total = parts["embed"] + parts["final"] + config.depth * parts["adaln"]
    for b in range(config.depth):
        for m in ("attn", "mlp"):
            if plan.action(step, b, m) == COMPUTE:
                total += parts[m]
            else:
                total += plan.order(step, b, m) * parts["forecast"]
    return 2 * total


def plan_macs(config: DiTConfig, plan: Plan) -> dict:
    per_step = [step_macs(config, plan, k) for k in range(plan.steps)]
    full = step_macs(config, Plan.full(1, config.depth), 0) * plan.steps
    total = sum(per_step)
    return {
        "macs_per_image": total,
        "macs_per_image_full": full,
        "per_step": per_step,
        "lazy_ratio_macs": 1 - total / full,
    }


def add_macs(plan_json: dict, macs: dict) -> dict:
    """A plan's JSON (changed in place and returned) with the counts of :func:`plan_macs`."""
    plan_json["lazy_ratio"]["macs"] = macs["lazy_ratio_macs"]
    plan_json["macs_per_image"] = macs["macs_per_image"]
    plan_json["macs_per_image_full"] = macs["macs_per_image_full"]
    return plan_json


def plan_record(config: DiTConfig, plan: Plan) -> dict:
    """The plan's JSON with its MAC counts for this model: what ``lazydit plan`` writes."""
    return add_macs(plan.to_dict(), plan_macs(config, plan))

"""Caching policies, registered by name; each turns its parameters into a :class:`Plan`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoints import weights_hash
from .model import MODULES, DiT
from .options import opt
from .plans import Plan, PlanError, check_order
from .registry import Registry


@dataclass
class PlanRequest:
    steps: int = opt(help="DDIM steps")
    ratio: float | None = opt(None, "lazy ratio to hit exactly (skipped modules / all modules)")
    threshold: float | None = opt(None, "lazydit/l2c: skip cells whose mean score is below this")
    interval: int | None = opt(None, "fora: recompute every n-th step")
    forecast: bool = opt(False, "forecast skipped modules instead of reusing them")
    forecast_order: int = opt(
        1, "with --forecast: Taylor order of the forecasts, 1-3 (lower where fewer modules computed before)"
    )
    gates: str | None = opt(None, "gate file (default: the shipped gates for --steps)")
    calib_per_class: int = opt(4, "lazydit calibration trajectories per class")
    budget: str = opt(
        "global",
        "lazydit/l2c: rank every cell together, or skip the same number in every step",
        choices=("global", "per-step"),
    )
    seed: int = opt(0, "seed of the random policy and of the calibration noise")


POLICIES: Registry[Callable[[DiT, PlanRequest], Plan]] = Registry("policy", PlanError)
register_policy = POLICIES.register


def make_plan(name: str, model: DiT, request: PlanRequest) -> Plan:
    check_order(request.forecast_order)
    if request.forecast_order != 1 and not request.forecast:
        raise PlanError(f"--forecast-order {request.forecast_order} needs --forecast")
    plan = POLICIES[name](model, request)
    plan.base = {"name": model.config.name, "weights_hash": weights_hash(model)}
    plan.sampler = model.sampler
    return plan.with_forecast(request.forecast_order) if request.forecast else plan


def load_plan(path: str | Path) -> Plan:
    """A plan file, refused if no registered policy made it."""
    return Plan.load(path, POLICIES)


def _cells(steps: int, depth: int) -> list[tuple[int, int, str]]:
    return [(k, b, m) for k in range(1, steps) for b in range(depth) for m in MODULES]


def skip_count(steps: int, depth: int, ratio: float) -> int:
    """Skips needed for ``ratio`` of all modules (step 0 included in the denominator)."""
    total = steps * depth * len(MODULES)
    limit = len(_cells(steps, depth))
    if not 0 <= ratio <= limit / total:
        raise PlanError(
            f"lazy ratio {ratio} is out of range for {steps} steps: step 0 never skips, "
            f"so the most is {limit / total:.3f}"
        )
    return round(ratio * total)


@register_policy("ddim")
def ddim_policy(model: DiT, req: PlanRequest) -> Plan:
    return Plan.full(req.steps, model.config.depth, policy="ddim")


@register_policy("fora")
def fora_policy(model: DiT, req: PlanRequest) -> Plan:
    """FORA: every module computes on every n-th step and is reused in between."""
    n = req.interval or 2
    if n < 1:
        raise PlanError("FORA needs --interval n >= 1")
    depth = model.config.depth
    skips = {(k, b, m) for (k, b, m) in _cells(req.steps, depth) if k % n}
    return Plan.from_skips(req.steps, depth, skips, policy="fora", params={"interval": n})


@register_policy("random")
def random_policy(model: DiT, req: PlanRequest) -> Plan:
    """Uniformly random skips at the requested ratio: the control that shows learning matters."""
    depth = model.config.depth
    cells = _cells(req.steps, depth)
    count = skip_count(req.steps, depth, req.ratio if req.ratio is not None else 0.5)
    order = torch.randperm(len(cells), generator=torch.Generator().manual_seed(req.seed))[:count]
    return Plan.from_skips(
        req.steps,
        depth,
        {cells[i] for i in order.tolist()},
        policy="random",
        params={"ratio": req.ratio, "seed": req.seed},
    )


def _rank(values: torch.Tensor, tiebreak: torch.Tensor | None) -> torch.Tensor:
    """Indices from lowest to highest score; equal scores (saturated gates) ordered by ``tiebreak``."""
    if tiebreak is None:
        return torch.argsort(values, stable=True)
    first = torch.argsort(tiebreak, stable=True)
    return first[torch.argsort(values[first], stable=True)]


def _from_scores(
    model: DiT, req: PlanRequest, scores: torch.Tensor, policy: str, params: dict, logits: torch.Tensor | None = None
) -> Plan:
    """Skip the lowest-scoring cells: exactly ``ratio`` of them, or all under ``threshold``."""
    depth = model.config.depth
    cells = _cells(req.steps, depth)
    values = torch.tensor([float(scores[k, b, MODULES.index(m)]) for k, b, m in cells])
    tiebreak = None if logits is None else torch.tensor([float(logits[k, b, MODULES.index(m)]) for k, b, m in cells])
    if req.threshold is not None:
        chosen = {cells[i] for i in (values < req.threshold).nonzero().squeeze(1).tolist()}
        params = {**params, "threshold": req.threshold}
    elif req.budget == "per-step":
        ratio = req.ratio if req.ratio is not None else 0.5
        count = skip_count(req.steps, depth, ratio)
        per_step = depth * len(MODULES)
        chosen = set()
        for j, k in enumerate(range(1, req.steps)):  # spread the skips as evenly as the count allows
            quota = (count * (j + 1)) // (req.steps - 1) - (count * j) // (req.steps - 1)
            step_cells = cells[j * per_step : (j + 1) * per_step]
            window = slice(j * per_step, (j + 1) * per_step)
            order = _rank(values[window], None if tiebreak is None else tiebreak[window])[:quota]
            chosen |= {step_cells[i] for i in order.tolist()}
        params = {**params, "ratio": ratio, "budget": "per-step"}
    elif req.budget == "global":
        ratio = req.ratio if req.ratio is not None else 0.5
        count = skip_count(req.steps, depth, ratio)
        order = _rank(values, tiebreak)[:count]
        chosen = {cells[i] for i in order.tolist()}
        params = {**params, "ratio": ratio}
    else:
        raise PlanError(f"unknown budget {req.budget!r}; use global or per-step")
    if tiebreak is not None and chosen and len(chosen) < len(cells):
        # the mean logit half-way between the skipped and the computed cells: per-sample gating
        # with this threshold skips about as much as the plan
        skipped = [float(v) for cell, v in zip(cells, tiebreak) if cell in chosen]
        kept = [float(v) for cell, v in zip(cells, tiebreak) if cell not in chosen]
        params = {**params, "cutoff_logit": (max(skipped) + min(kept)) / 2}
    return Plan.from_skips(req.steps, depth, chosen, policy=policy, params=params)


def _gate_scores(model: DiT, req: PlanRequest, kind: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    from .gates import calibrate, default_gates_path, load_gates

    path = req.gates or str(default_gates_path(req.steps, kind))
    gates = load_gates(path, model, req.steps)
    if gates.kind != kind:
        raise PlanError(f"{path} holds {gates.kind} gates, policy needs {kind}")
    if kind == "router":
        logits = gates.logits.detach().view(req.steps, model.config.depth, len(MODULES))
        return torch.sigmoid(logits), logits, path
    scores, logits = calibrate(model, gates, per_class=req.calib_per_class, seed=req.seed + 1000, with_logits=True)
    return scores, logits, path


@register_policy("lazydit")
def lazydit_policy(model: DiT, req: PlanRequest) -> Plan:
    """LazyDiT gates calibrated over every class into one static plan."""
    scores, logits, path = _gate_scores(model, req, "lazydit")
    return _from_scores(
        model, req, scores, "lazydit", {"gates": str(path), "calib_per_class": req.calib_per_class}, logits
    )


@register_policy("l2c")
def l2c_policy(model: DiT, req: PlanRequest) -> Plan:
    """Learning-to-Cache: an input-invariant router trained with the same objective."""
    scores, logits, path = _gate_scores(model, req, "router")
    return _from_scores(model, req, scores, "l2c", {"gates": str(path)}, logits)

"""The reference plan executor: DDIM with classifier-free guidance that executes any skip plan in
eager PyTorch with explicit caches. Every exported graph is compared against these numerics.

The same loop runs a static plan (every sample makes the plan's choice) and dynamic gating (each
sample asks its lazy gates, the paper's behaviour). A module's cache is its output *before* the
adaLN gate multiplies it; per sample it holds the last two computed outputs and the steps that
produced them, so forecasting works in both modes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .diffusion import DDIMSchedule
from .model import MODULES, DiT
from .plans import COMPUTE, MAX_ORDER, Plan, PlanError


@dataclass
class ModuleCache:
    """A module's last computed outputs per row, newest first, with the steps that made them
    (-1 where a row has computed fewer times): enough for a forecast of order ``len(outs) - 1``."""

    outs: list[torch.Tensor]
    steps: torch.Tensor  # [rows, len(outs)]

    @classmethod
    def empty(cls, like: torch.Tensor, depth: int = 2) -> ModuleCache:
        rows = like.shape[0]
        return cls(
            [torch.zeros_like(like) for _ in range(depth)],
            torch.full((rows, depth), -1, dtype=torch.long, device=like.device),
        )

    def push(self, step: int, fresh: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        if rows is None:
            self.outs = [fresh, *self.outs[:-1]]
            self.steps = torch.cat([torch.full_like(self.steps[:, :1], step), self.steps[:, :-1]], dim=1)
            return
        for i in range(len(self.outs) - 1, 0, -1):
            self.outs[i][rows] = self.outs[i - 1][rows]
        self.outs[0][rows] = fresh
        self.steps[rows] = torch.cat([torch.full_like(self.steps[rows, :1], step), self.steps[rows, :-1]], dim=1)

    def estimate(self, step: int, order: int, basis: str = "newton") -> torch.Tensor:
        """Reuse the last output (order 0), or forecast it from the order + 1 last computes
        (the plan's basis: Newton's polynomial or TaylorSeer's expansion), lowered per row to the
        computes the row has (a row with one compute reuses it)."""
        last, prev = self.outs[0], self.outs[1]
        if order == 0:
            return last
        k1, k0 = self.steps[:, 0], self.steps[:, 1]
        span = (k1 - k0).clamp_min(1).to(last.dtype)
        coef = torch.where(k0 >= 0, (step - k1).to(last.dtype) / span, torch.zeros_like(span))
        out = last + coef.view(-1, 1, 1) * (last - prev)
        if order == 1:
            return out
        return out + (self._higher_terms(step, order) if basis == "newton" else self._taylor_terms(step, order))

    def _higher_terms(self, step: int, order: int) -> torch.Tensor:
        """The Newton terms of orders 2..``order``: prod_{j<i} (step - t_j) * f[t_0, ..., t_i]."""
        t = self.steps.to(self.outs[0].dtype)
        level, weight, total = list(self.outs[: order + 1]), step - t[:, 0], 0.0
        for i in range(1, order + 1):
            spans = [(t[:, j] - t[:, j + i]).clamp_min(1).view(-1, 1, 1) for j in range(len(level) - 1)]
            level = [(level[j] - level[j + 1]) / spans[j] for j in range(len(level) - 1)]
            if i >= 2:
                weight = weight * (step - t[:, i - 1])
                used = torch.where(self.steps[:, i] >= 0, weight, torch.zeros_like(weight))
                total = total + used.view(-1, 1, 1) * level[0]
        return total

    def _taylor_terms(self, step: int, order: int) -> torch.Tensor:
        """TaylorSeer's terms of orders 2..``order``: ``D_i(t_0) (step - t_0)^i / i!``, where
        ``D_i(t_j) = (D_(i-1)(t_j) - D_(i-1)(t_(j+1))) / (t_j - t_(j+1))`` (each compute divides
        by the steps since the one before it, as diffusers' hook does)."""
        t = self.steps.to(self.outs[0].dtype)
        level, total = list(self.outs[: order + 1]), 0.0
        offset = (step - t[:, 0]).view(-1, 1, 1)
        for i in range(1, order + 1):
            spans = [(t[:, j] - t[:, j + 1]).clamp_min(1).view(-1, 1, 1) for j in range(len(level) - 1)]
            level = [(level[j] - level[j + 1]) / spans[j] for j in range(len(level) - 1)]
            if i >= 2:
                used = (self.steps[:, i] >= 0).view(-1, 1, 1)
                total = total + torch.where(used, level[0] * offset**i / math.factorial(i), 0.0)
        return total


# A decider sees (step, block, module, modulated input) and returns a bool per *pair* row
# (True = compute) or None to follow the plan.
Decider = Callable[[int, int, str, torch.Tensor], torch.Tensor | None]


@dataclass
class StepRecord:
    step: int
    x: torch.Tensor  # sample after the step
    computed: dict[tuple[int, str], float]  # fraction of samples that computed each module


@dataclass
class SamplerState:
    """The sampler before step ``step``: the sample and every module's cache. Static plans never
    write a cache tensor in place (a compute pushes a new list), so a copy of the lists is a
    snapshot."""

    step: int
    x: torch.Tensor
    caches: dict

    def copy_caches(self) -> dict:
        return {key: ModuleCache(list(c.outs), c.steps) for key, c in self.caches.items()}

    def frozen(self) -> SamplerState:
        return SamplerState(self.step, self.x, self.copy_caches())


@torch.no_grad()
def sample(
    model: DiT,
    noise: torch.Tensor,
    labels: torch.Tensor,
    plan: Plan,
    cfg_scale: float = 1.5,
    decider: Decider | None = None,
    dynamic_forecast: int = 0,
    on_step: Callable[[StepRecord], None] | None = None,
    snapshots: list | None = None,
    resume: SamplerState | None = None,
    history: int | None = None,
) -> torch.Tensor:
    """Run DDIM over ``plan``; returns the final samples in [-1, 1]. ``dynamic_forecast``: the
    forecast order of the modules a ``decider`` skips (0 reuses them; ``True`` is order 1).

    For static plans, ``snapshots`` collects the sampler's state before every step, and
    ``resume`` starts from such a state: two plans that agree on every step before ``k`` reach
    step ``k`` in the same state, so a search over plans need not run that prefix again.
    ``history``: the computes kept per module (default: what the plan's forecasts need); give
    the same number to plans whose states are exchanged."""
    plan.check_model(model.config)
    if not 0 <= int(dynamic_forecast) <= MAX_ORDER:
        raise PlanError(f"dynamic forecast order {dynamic_forecast} is outside 0-{MAX_ORDER} (0 reuses)")
    if decider is not None and (snapshots is not None or resume is not None):
        raise ValueError("snapshots and resume are for static plans: a decider updates the caches in place")
    depth = history or max(2, plan.max_order + 1, int(dynamic_forecast) + 1)
    if depth < max(2, plan.max_order + 1):
        raise ValueError(f"history {history} is too short for forecasts of order {plan.max_order}")
    schedule = DDIMSchedule(plan.steps)
    batch = noise.shape[0]
    x = noise.clone()
    null = torch.full_like(labels, model.config.num_classes)
    y_pair = torch.cat([labels, null])
    caches: dict[tuple[int, str], ModuleCache] = {}
    first = 0
    if resume is not None:
        first, x, caches = resume.step, resume.x, resume.copy_caches()
    for k in range(first, plan.steps):
        if snapshots is not None:
            snapshots.append(SamplerState(k, x, caches).frozen())
        s = schedule.scalars(k)
        t_pair = torch.full((2 * batch,), s["t"], device=x.device)
        tokens, c = model.embed(torch.cat([x, x]), t_pair, y_pair)
        computed = {}
        for b, block in enumerate(model.blocks):
            mods = block.modulation(c)
            for m in MODULES:
                h = block.branch_input(m, tokens, mods)
                action = plan.action(k, b, m)
                wants = decider(k, b, m, h) if (decider is not None and k > 0) else None
                if wants is None:
                    wants = torch.full((batch,), action == COMPUTE, device=x.device)
                    order = plan.order(k, b, m)
                else:
                    order = int(dynamic_forecast)
                out = _branch(block, m, h, wants, caches, (b, m), k, order, depth, plan.basis)
                computed[(b, m)] = float(wants.float().mean())
                tokens = tokens + block.gate(m, mods).unsqueeze(1) * out
        eps = model.eps(model.head(tokens, c))
        x = plan.sampler.update(x, plan.sampler.guide(eps[:batch], eps[batch:], cfg_scale), s["alpha"], s["alpha_prev"])
        if on_step is not None:
            on_step(StepRecord(k, x, computed))
    return x


def _branch(
    block,
    module: str,
    h: torch.Tensor,
    wants: torch.Tensor,
    caches: dict,
    key,
    step: int,
    order: int,
    depth: int,
    basis: str = "newton",
) -> torch.Tensor:
    rows = torch.cat([wants, wants])
    if bool(rows.all()):
        fresh = block.branch(module, h)
        if key not in caches:
            caches[key] = ModuleCache.empty(fresh, depth)
        caches[key].push(step, fresh)
        return fresh
    if key not in caches:
        raise RuntimeError(f"module {key} skipped before it ever computed")
    out = caches[key].estimate(step, order, basis).clone()
    if bool(rows.any()):
        idx = rows.nonzero().squeeze(1)
        fresh = block.branch(module, h[idx])
        out[idx] = fresh
        caches[key].push(step, fresh, idx)
    return out

"""The reference plan executor: DDIM with classifier-free guidance that executes any skip plan in
eager PyTorch with explicit caches. Every exported graph is compared against these numerics.

The same loop runs a static plan (every sample makes the plan's choice) and dynamic gating (each
sample asks its lazy gates, the paper's behaviour). A module's cache is its output *before* the
adaLN gate multiplies it; per sample it holds the last two computed outputs and the steps that
produced them, so forecasting works in both modes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .diffusion import DDIMSchedule
from .model import MODULES, DiT
from .plans import COMPUTE, FORECAST, Plan


@dataclass
class ModuleCache:
    last: torch.Tensor
    prev: torch.Tensor
    k1: torch.Tensor  # step of ``last`` per row, -1 if none
    k0: torch.Tensor  # step of ``prev`` per row, -1 if none

    @classmethod
    def empty(cls, like: torch.Tensor) -> ModuleCache:
        rows = like.shape[0]
        return cls(
            torch.zeros_like(like),
            torch.zeros_like(like),
            torch.full((rows,), -1, dtype=torch.long),
            torch.full((rows,), -1, dtype=torch.long),
        )

    def push(self, step: int, fresh: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        if rows is None:
            self.prev, self.last = self.last, fresh
            self.k0, self.k1 = self.k1, torch.full_like(self.k1, step)
            return
        self.prev[rows] = self.last[rows]
        self.last[rows] = fresh
        self.k0[rows] = self.k1[rows]
        self.k1[rows] = step

    def estimate(self, step: int, forecast: bool) -> torch.Tensor:
        """Reuse the last output, or extrapolate it to first order where two computes exist."""
        if not forecast:
            return self.last
        have_two = self.k0 >= 0
        span = (self.k1 - self.k0).clamp_min(1).to(self.last.dtype)
        coef = torch.where(have_two, (step - self.k1).to(self.last.dtype) / span, torch.zeros_like(span))
        return self.last + coef.view(-1, 1, 1) * (self.last - self.prev)


# A decider sees (step, block, module, modulated input) and returns a bool per *pair* row
# (True = compute) or None to follow the plan.
Decider = Callable[[int, int, str, torch.Tensor], torch.Tensor | None]


@dataclass
class StepRecord:
    step: int
    x: torch.Tensor  # sample after the step
    computed: dict[tuple[int, str], float]  # fraction of samples that computed each module


@torch.no_grad()
def sample(
    model: DiT,
    noise: torch.Tensor,
    labels: torch.Tensor,
    plan: Plan,
    cfg_scale: float = 1.5,
    decider: Decider | None = None,
    dynamic_forecast: bool = False,
    on_step: Callable[[StepRecord], None] | None = None,
) -> torch.Tensor:
    """Run DDIM over ``plan``; returns the final samples in [-1, 1]."""
    plan.check_model(model.config)
    schedule = DDIMSchedule(plan.steps)
    batch = noise.shape[0]
    x = noise.clone()
    null = torch.full_like(labels, model.config.num_classes)
    y_pair = torch.cat([labels, null])
    caches: dict[tuple[int, str], ModuleCache] = {}
    for k in range(plan.steps):
        s = schedule.scalars(k)
        t_pair = torch.full((2 * batch,), s["t"])
        tokens, c = model.embed(torch.cat([x, x]), t_pair, y_pair)
        computed = {}
        for b, block in enumerate(model.blocks):
            mods = block.modulation(c)
            for m in MODULES:
                h = block.branch_input(m, tokens, mods)
                action = plan.action(k, b, m)
                wants = decider(k, b, m, h) if (decider is not None and k > 0) else None
                if wants is None:
                    wants = torch.full((batch,), action == COMPUTE)
                    forecast = action == FORECAST
                else:
                    forecast = dynamic_forecast
                out = _branch(block, m, h, wants, caches, (b, m), k, forecast)
                computed[(b, m)] = float(wants.float().mean())
                tokens = tokens + block.gate(m, mods).unsqueeze(1) * out
        eps = model.eps(model.head(tokens, c))
        x = plan.sampler.update(x, plan.sampler.guide(eps[:batch], eps[batch:], cfg_scale), s["alpha"], s["alpha_prev"])
        if on_step is not None:
            on_step(StepRecord(k, x, computed))
    return x


def _branch(
    block, module: str, h: torch.Tensor, wants: torch.Tensor, caches: dict, key, step: int, forecast: bool
) -> torch.Tensor:
    rows = torch.cat([wants, wants])
    if bool(rows.all()):
        fresh = block.branch(module, h)
        if key not in caches:
            caches[key] = ModuleCache.empty(fresh)
        caches[key].push(step, fresh)
        return fresh
    if key not in caches:
        raise RuntimeError(f"module {key} skipped before it ever computed")
    out = caches[key].estimate(step, forecast).clone()
    if bool(rows.any()):
        idx = rows.nonzero().squeeze(1)
        fresh = block.branch(module, h[idx])
        out[idx] = fresh
        caches[key].push(step, fresh, idx)
    return out

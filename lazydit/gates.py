"""Lazy gates (LazyDiT) and input-invariant routers (Learning-to-Cache), and their training.

A lazy gate is one ``Linear(hidden, 1, bias=False)`` per (sampling step, block, module), zero
initialised, applied to the module's adaLN-modulated input; the score is the sigmoid of the sum
over tokens and means "compute". A router is one learnable scalar per cell, the same for every
input. Both are trained on a frozen DiT with the same objective::

    MSE(full guided eps, soft-lazy guided eps) + rho_attn * sum(score_attn) + rho_mlp * sum(score_mlp)

where the soft-lazy module output is ``score * fresh + (1 - score) * cache`` and the cache is the
module's output one DDIM step earlier (the ``local`` objective, the paper's).

The local objective assumes the cache is always one step old. A static plan chains skips, so a
cache can be many steps stale, and an error in a high-noise step changes which image comes out
rather than how good the next step is. The ``trajectory`` objective measures what a plan is
judged on: it unrolls the whole soft-lazy DDIM trajectory from noise (every cache is the previous
soft output, so staleness compounds as it does in a plan) and compares the *final sample* with the
full-compute sampler's from the same noise and label::

    MSE(full final sample, soft-lazy final sample) + rho_attn * sum(score_attn) + rho_mlp * sum(score_mlp)

With ``target_ratio`` set, rho is a Lagrange multiplier raised or lowered every iteration until the
mean score matches that lazy ratio. Gates are stored in their own small file tied to the base
model (a hash of its weights) and the sampler (DDIM, N steps).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as recompute_in_backward
from tqdm import tqdm

from .checkpoints import weights_hash
from .data import ImageDataset, digits
from .diffusion import DDIMSchedule, initial_noise, q_sample
from .distributed import DEVICES, World, best_device
from .executor import sample
from .files import atomic_write
from .model import MODULES, DiT, DiTConfig
from .options import opt
from .plans import MAX_ORDER, Plan

GATE_KINDS = ("lazydit", "router")
OBJECTIVES = ("local", "trajectory")


class GateError(ValueError):
    pass


class LazyGates(nn.Module):
    """Scores for every (step, block, module) cell; ``kind`` is ``lazydit`` or ``router``."""

    def __init__(self, steps: int, depth: int, hidden: int, kind: str = "lazydit"):
        super().__init__()
        if kind not in GATE_KINDS:
            raise GateError(f"unknown gate kind {kind!r}; choose one of {GATE_KINDS}")
        self.steps, self.depth, self.hidden, self.kind = steps, depth, hidden, kind
        cells = steps * depth * len(MODULES)
        if kind == "lazydit":
            self.linears = nn.ModuleList(nn.Linear(hidden, 1, bias=False) for _ in range(cells))
            for linear in self.linears:
                nn.init.zeros_(linear.weight)
        else:
            self.logits = nn.Parameter(torch.zeros(cells))

    def _index(self, step: int, block: int, module: str) -> int:
        return (step * self.depth + block) * len(MODULES) + MODULES.index(module)

    def score(self, step: int, block: int, module: str, h: torch.Tensor) -> torch.Tensor:
        """One score per row of ``h`` (rows x tokens x hidden)."""
        return torch.sigmoid(self.logit(step, block, module, h))

    def logit(self, step: int, block: int, module: str, h: torch.Tensor) -> torch.Tensor:
        """The pre-sigmoid score, one per row of ``h``."""
        i = self._index(step, block, module)
        if self.kind == "router":
            return self.logits[i].expand(h.shape[0])
        return self.linears[i](h).sum(dim=(1, 2))

    def pair_logit(self, step: int, block: int, module: str, h: torch.Tensor) -> torch.Tensor:
        return _pair_mean(self.logit(step, block, module, h))

    def pair_score(self, step: int, block: int, module: str, h: torch.Tensor) -> torch.Tensor:
        """Class and null-class rows of a guided batch share one decision: average their scores."""
        return _pair_mean(self.score(step, block, module, h))


def _pair_mean(rows: torch.Tensor) -> torch.Tensor:
    half = rows.shape[0] // 2
    return (rows[:half] + rows[half:]) / 2


# The recipe each objective was tuned with; a field left at None takes its objective's value.
OBJECTIVE_DEFAULTS = {
    "trajectory": {"lr": 3e-4, "iterations": 400, "batch": 16, "target_ratio": 0.5},
    "local": {"lr": 5e-3, "iterations": 1500, "batch": 32, "target_ratio": None},
}


@dataclass
class GateTrainConfig:
    steps: int = opt(help="DDIM steps the gates are for")
    kind: str = opt(
        "lazydit",
        "lazydit: input-dependent gates; router: Learning-to-Cache's input-invariant router",
        choices=GATE_KINDS,
    )
    objective: str = opt(
        "trajectory",
        "trajectory: unroll the whole soft-lazy sampler and compare the final sample with full compute; "
        "local: the one-step loss of the LazyDiT paper",
        choices=OBJECTIVES,
    )
    rho_attn: float = opt(1e-4, "penalty weight of attention scores")
    rho_mlp: float = opt(1e-4, "penalty weight of MLP scores")
    lr: float | None = opt(None, "Adam learning rate (default: 3e-4 trajectory, 5e-3 local)")
    iterations: int | None = opt(None, "optimizer steps (default: 400 trajectory, 1500 local)")
    batch: int | None = opt(None, "samples per optimizer step (default: 16 trajectory, 32 local)")
    cfg_scale: float = opt(1.5, "classifier-free guidance scale")
    seed: int = opt(0, "seed of the gates, the noise and the labels")
    target_ratio: float | None = opt(
        None,
        "adapt rho during training until the mean score gives this lazy ratio (default: 0.5 trajectory, fixed rho local)",
    )
    pool: int = opt(512, "trajectory objective: reference trajectories (noise, label, full-compute sample)")
    forecast: bool = opt(False, "trajectory objective: skipped modules are forecast (for plans made with --forecast)")
    forecast_order: int = opt(1, "with --forecast: the forecast order, 1-3 (the one the plans will use)")
    checkpoint: bool = opt(
        True,
        "trajectory objective: recompute each sampler step's activations in the backward pass, keeping only "
        "the sample and the caches between steps (same gradients; about a third more compute)",
    )
    device: str = opt(
        "auto",
        "cpu, cuda or mps; auto: the best available (bf16 autocast on CUDA GPUs that support it, fp32 elsewhere)",
        choices=DEVICES,
    )

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise GateError(f"unknown objective {self.objective!r}; choose one of {OBJECTIVES}")
        if self.kind not in GATE_KINDS:
            raise GateError(f"unknown gate kind {self.kind!r}; choose one of {GATE_KINDS}")
        for key, value in OBJECTIVE_DEFAULTS[self.objective].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.steps < 2:
            raise GateError("gates need at least 2 sampling steps (step 0 never skips)")
        if self.forecast and self.objective != "trajectory":
            raise GateError("--forecast needs the trajectory objective (the local loss has no skip chains to forecast)")
        if self.forecast_order not in range(1, MAX_ORDER + 1) or (self.forecast_order != 1 and not self.forecast):
            raise GateError(
                f"--forecast-order {self.forecast_order}: give --forecast and an order from 1 to {MAX_ORDER}"
            )
        if self.target_ratio is not None and not 0 < self.target_ratio < (self.steps - 1) / self.steps:
            raise GateError(
                f"target ratio {self.target_ratio} is out of range for {self.steps} steps "
                f"(step 0 never skips, so below {(self.steps - 1) / self.steps:.3f})"
            )


def _guided_eps(model: DiT, tokens: torch.Tensor, c: torch.Tensor, cfg_scale: float) -> torch.Tensor:
    eps = model.eps(model.head(tokens, c))
    half = eps.shape[0] // 2
    return model.sampler.guide(eps[:half], eps[half:], cfg_scale)


class _Objective(nn.Module):
    """The gates and one loss over them: a forward for DistributedDataParallel to synchronise
    (the frozen DiT stays outside, so it is neither broadcast nor reduced)."""

    def __init__(self, gates: LazyGates, loss: Callable[..., tuple[torch.Tensor, ...]]):
        super().__init__()
        self.gates, self.loss = gates, loss

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.loss(self.gates, *args)


def _on_device(model: DiT, world: World) -> DiT:
    """The frozen DiT on the world's device in its compute dtype; the caller's model is left as it
    is (its weights hash ties the gate file to it)."""
    model.eval().requires_grad_(False)
    if world.device.type == "cpu" and world.dtype == torch.float32:
        return model
    return copy.deepcopy(model).to(world.device, world.dtype)


def train_gates(
    model: DiT,
    config: GateTrainConfig,
    data: ImageDataset | None = None,
    progress: bool = True,
    world: World | None = None,
) -> tuple[LazyGates, list[float]]:
    """Train gates for every step index except the first; returns the gates and the loss curve.
    The local objective draws noisy samples from ``data`` (default: the digits train split).

    In a ``world`` of several processes each computes its share of every global batch and
    DistributedDataParallel averages the gradients; every random draw is made for the global batch
    from the one seed, so the gates do not depend on the number of processes."""
    world = world or World(device=best_device(config.device))
    local_batch = world.split(config.batch, "batch")
    frozen = _on_device(model, world)
    if config.objective == "trajectory":
        return _train_trajectory(frozen, config, progress and world.main, world, local_batch)
    data = data if data is not None else digits("train")
    arch = model.config
    if data.shape != (arch.in_channels, arch.input_size, arch.input_size):
        raise GateError(
            f"the local objective draws training inputs of shape {data.shape}, the model takes "
            f"{(arch.in_channels, arch.input_size, arch.input_size)}; use the trajectory objective (it needs no data)"
        )
    steps = config.steps
    torch.manual_seed(config.seed)
    gates = LazyGates(steps, model.config.depth, model.config.hidden_size, config.kind).to(world.device)
    objective = world.data_parallel(_Objective(gates, partial(_local_loss, frozen, config, world)))
    optimizer = torch.optim.Adam(gates.parameters(), lr=config.lr)
    schedule = DDIMSchedule(steps)
    gen = torch.Generator().manual_seed(config.seed)
    mine = slice(world.rank * local_batch, (world.rank + 1) * local_batch)
    losses = []
    bar = tqdm(range(config.iterations), desc=f"gates ddim{steps}", disable=not (progress and world.main))
    for _ in bar:
        k = int(torch.randint(1, steps, (1,), generator=gen))
        idx = torch.randint(0, len(data), (config.batch,), generator=gen)
        x0, y = data.images[idx], data.labels[idx]
        prev = schedule.scalars(k - 1)
        x_prev = q_sample(x0, torch.full((config.batch,), int(prev["t"])), torch.randn(x0.shape, generator=gen))
        mse, penalty = objective(x_prev[mine].to(world.device), y[mine].to(world.device), torch.tensor(k))
        loss = mse + penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(world.mean(mse.detach())))
        if len(losses) % 25 == 0:
            bar.set_postfix(mse=f"{sum(losses[-25:]) / 25:.2e}")
    return gates.eval().cpu(), losses


def _local_loss(
    model: DiT, config: GateTrainConfig, world: World, gates: LazyGates, x_prev, y, step
) -> tuple[torch.Tensor, torch.Tensor]:
    """The one-step loss at step ``k``: the soft-lazy guided eps against full compute, the cache
    being every module's output one step earlier."""
    k, schedule = int(step), DDIMSchedule(config.steps)
    y_pair = torch.cat([y, torch.full_like(y, model.config.num_classes)])
    with world.autocast():
        with torch.no_grad():
            caches, x_k = _full_step(model, x_prev, y_pair, schedule.scalars(k - 1), config.cfg_scale)
            t_pair = torch.full((y_pair.shape[0],), schedule.scalars(k)["t"], device=x_prev.device)
            tokens, c = model.embed(torch.cat([x_k, x_k]), t_pair, y_pair)
            target = _guided_eps(model, _full_blocks(model, tokens, c), c, config.cfg_scale)
        soft = tokens
        penalty = torch.zeros((), device=x_prev.device)
        for b, block in enumerate(model.blocks):
            mods = block.modulation(c)
            for m in MODULES:
                h = block.branch_input(m, soft, mods)
                s = gates.pair_score(k, b, m, h)
                s_pair = torch.cat([s, s]).view(-1, 1, 1)
                out = s_pair * block.branch(m, h) + (1 - s_pair) * caches[(b, m)]
                soft = soft + block.gate(m, mods).unsqueeze(1) * out
                penalty = penalty + (config.rho_attn if m == "attn" else config.rho_mlp) * s.mean()
        mse = torch.mean((_guided_eps(model, soft, c, config.cfg_scale).float() - target.float()) ** 2)
    return mse, penalty


class _Rho:
    """rho_attn and rho_mlp, fixed, or scaled together as a Lagrange multiplier so the mean score
    of the trainable cells settles where the requested lazy ratio puts it."""

    def __init__(self, config: GateTrainConfig, steps: int, depth: int, rate: float = 0.5):
        self.base = {"attn": config.rho_attn, "mlp": config.rho_mlp}
        self.log_scale, self.rate = 0.0, rate
        total, trainable = steps * depth * len(MODULES), (steps - 1) * depth * len(MODULES)
        self.target = None if config.target_ratio is None else 1 - config.target_ratio * total / trainable

    def __getitem__(self, module: str) -> float:
        return self.base[module] * math.exp(self.log_scale)

    def update(self, mean_score: float) -> None:
        if self.target is not None:
            self.log_scale += self.rate * (mean_score - self.target) / max(self.target, 1e-3)


def soft_trajectory(
    model: DiT,
    gates: LazyGates,
    noise: torch.Tensor,
    labels: torch.Tensor,
    cfg_scale: float,
    forecast: int = 0,
    checkpoint: bool = False,
) -> tuple[torch.Tensor, list[tuple[str, torch.Tensor]]]:
    """DDIM over every step with soft-lazy modules: ``score * fresh + (1 - score) * estimate``.

    The estimate is the module's previous soft output (reuse, ``forecast`` 0) or a forecast of
    order ``forecast`` (``True`` is 1), its ingredients carried as expectations over the gates'
    choices (:class:`_SoftSlope`, :class:`_SoftHistory`), so with scores of exactly 0 or 1 this is
    the plan executor with every skipped cell reused or forecast (``Plan.with_forecast(order)``).
    Returns the final sample and every score.

    With ``checkpoint`` the steps are recomputed in the backward pass, in two levels: the unroll
    is cut into segments of about sqrt(steps) steps, autograd keeps only what crosses from one
    segment to the next (the sample and every module's cache state), and while a segment's
    backward runs, its steps are recomputed one by one, each keeping only its own inputs. Memory
    then grows with about 2 sqrt(steps) x (sample + caches) plus one step's activations, not
    steps x activations; the gradients are the same."""
    schedule = DDIMSchedule(gates.steps)
    y_pair = torch.cat([labels, torch.full_like(labels, model.config.num_classes)])
    step = partial(_soft_step, model, gates, schedule, y_pair, cfg_scale, int(forecast))
    x, state, scores = noise, (), []
    names = MODULES * model.config.depth
    if checkpoint and torch.is_grad_enabled():
        span = checkpoint_span(gates.steps)
        for start in range(0, gates.steps, span):
            ks = tuple(range(start, min(start + span, gates.steps)))
            x, flat, state = recompute_in_backward(_segment, step, ks, x, *state, use_reentrant=False)
            scores.extend(zip(names * len(ks), flat))
        return x, scores
    for k in range(gates.steps):
        x, step_scores, state = step(k, x, *state)
        scores.extend(zip(names, step_scores))
    return x, scores


def checkpoint_span(steps: int) -> int:
    """Steps per checkpointed segment: about sqrt(steps), which minimises the states kept at
    once (one per segment boundary, then one per step of the segment being differentiated)."""
    return max(1, math.ceil(math.sqrt(steps)))


def _segment(step, ks: tuple[int, ...], x: torch.Tensor, *state: torch.Tensor):
    """Steps ``ks`` of the soft-lazy unroll, each checkpointed on its own; the scores flattened."""
    flat: list[torch.Tensor] = []
    for k in ks:
        x, step_scores, state = recompute_in_backward(step, k, x, *state, use_reentrant=False)
        flat.extend(step_scores)
    return x, tuple(flat), state


def _soft_step(
    model: DiT,
    gates: LazyGates,
    schedule: DDIMSchedule,
    y_pair: torch.Tensor,
    cfg_scale: float,
    order: int,
    k: int,
    x: torch.Tensor,
    *state: torch.Tensor,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """One soft-lazy DDIM step: the next sample, the step's scores and every module's cache state.

    A pure function of its tensors (the caches are rebuilt from ``state``, never mutated), so the
    backward pass can run it again and get the same activations."""
    estimator = _SoftHistory if order > 1 else _SoftSlope
    width = estimator.state_size(order)
    caches = [estimator.from_state(order, state[i : i + width]) for i in range(0, len(state), width)]
    batch = x.shape[0]
    s = schedule.scalars(k)
    tokens, c = model.embed(torch.cat([x, x]), torch.full((2 * batch,), s["t"], device=x.device), y_pair)
    scores = []
    for b, block in enumerate(model.blocks):
        mods = block.modulation(c)
        for j, m in enumerate(MODULES):
            h = block.branch_input(m, tokens, mods)
            fresh = block.branch(m, h)
            if k == 0:
                out = fresh
                caches.append(estimator(fresh, order))
            else:
                score = gates.pair_score(k, b, m, h)
                scores.append(score)
                pair = torch.cat([score, score]).view(-1, 1, 1)
                cache = caches[b * len(MODULES) + j]
                out = pair * fresh + (1 - pair) * cache.estimate(k)
                cache.push(k, fresh, pair, out)
            tokens = tokens + block.gate(m, mods).unsqueeze(1) * out
    eps = model.eps(model.head(tokens, c))
    x = model.sampler.update(x, model.sampler.guide(eps[:batch], eps[batch:], cfg_scale), s["alpha"], s["alpha_prev"])
    return x, tuple(scores), tuple(t for cache in caches for t in cache.state())


class _SoftSlope:
    """Orders 0 and 1: the previous soft output, for order 1 extrapolated one more step along a
    soft slope; the slope and the age of the last compute are expectations."""

    def __init__(self, fresh: torch.Tensor, order: int):
        self.last, self.order = fresh, order
        self.slope = torch.zeros_like(fresh)
        self.age = torch.zeros(fresh.shape[0], 1, 1, device=fresh.device)

    @staticmethod
    def state_size(order: int) -> int:
        return 3 if order else 1

    def state(self) -> tuple[torch.Tensor, ...]:
        return (self.last, self.slope, self.age) if self.order else (self.last,)

    @classmethod
    def from_state(cls, order: int, state: tuple[torch.Tensor, ...]) -> _SoftSlope:
        cache = cls.__new__(cls)
        cache.order, cache.last = order, state[0]
        if order:
            cache.slope, cache.age = state[1], state[2]
        return cache

    def estimate(self, step: int) -> torch.Tensor:
        return self.last + self.slope if self.order else self.last

    def push(self, step: int, fresh: torch.Tensor, score: torch.Tensor, out: torch.Tensor) -> None:
        if self.order:
            # slope through the last compute: (fresh - value at that compute) / steps since
            new_slope = (fresh - self.last + self.age * self.slope) / (self.age + 1)
            self.slope = score * new_slope + (1 - score) * self.slope
            self.age = (1 - score) * (self.age + 1)
        self.last = out


class _SoftHistory:
    """Orders 2 and 3: a module's last ``order + 1`` computes as expectations: values, their
    steps and whether they exist, each mixed ``score * shifted + (1 - score) * kept`` at every
    step. The steps stay at least one apart (a mix of two such sequences does), so every divided
    difference is finite; with hard scores this is the executor's cache."""

    def __init__(self, fresh: torch.Tensor, order: int):
        rows = torch.ones(fresh.shape[0], 1, 1, device=fresh.device)
        self.values = [fresh] + [torch.zeros_like(fresh) for _ in range(order)]
        self.steps = [rows * -float(i) for i in range(order + 1)]
        self.exists = [rows] + [rows * 0.0 for _ in range(order)]

    @staticmethod
    def state_size(order: int) -> int:
        return 3 * (order + 1)

    def state(self) -> tuple[torch.Tensor, ...]:
        return (*self.values, *self.steps, *self.exists)

    @classmethod
    def from_state(cls, order: int, state: tuple[torch.Tensor, ...]) -> _SoftHistory:
        cache, n = cls.__new__(cls), order + 1
        cache.values, cache.steps, cache.exists = list(state[:n]), list(state[n : 2 * n]), list(state[2 * n :])
        return cache

    def estimate(self, step: int) -> torch.Tensor:
        """The Newton polynomial through the history at ``step``, term i weighted by entry i existing."""
        level, weight, out, t = list(self.values), 1.0, self.values[0], self.steps
        for i in range(1, len(level)):
            level = [(level[j] - level[j + 1]) / (t[j] - t[j + i]) for j in range(len(level) - 1)]
            weight = weight * (step - t[i - 1])
            out = out + self.exists[i] * weight * level[0]
        return out

    def push(self, step: int, fresh: torch.Tensor, score: torch.Tensor, out: torch.Tensor) -> None:
        def mix(items: list[torch.Tensor], new: torch.Tensor) -> list[torch.Tensor]:
            shifted = [new, *items[:-1]]
            return [score * a + (1 - score) * b for a, b in zip(shifted, items)]

        ones = torch.ones_like(self.exists[0])
        self.values = mix(self.values, fresh)
        self.steps, self.exists = mix(self.steps, ones * float(step)), mix(self.exists, ones)


def _reference_trajectories(
    model: DiT, config: GateTrainConfig, world: World, noise: torch.Tensor, labels: torch.Tensor, progress: bool
) -> torch.Tensor:
    """The full-compute final sample of every pool entry, in chunks of 64: each rank computes its
    run of chunks and the shares (zeros elsewhere) add up to the same pool on every rank."""
    steps, chunk = config.steps, 64
    plan = Plan.full(steps, model.config.depth, sampler=model.sampler)
    starts = list(range(0, config.pool, chunk))
    targets = torch.zeros(noise.shape, device=world.device)
    for j in tqdm(world.blocks(len(starts)), desc=f"reference trajectories ddim{steps}", disable=not progress):
        part = slice(starts[j], starts[j] + chunk)
        with world.autocast():
            targets[part] = sample(model, noise[part], labels[part], plan, config.cfg_scale).float()
    return world.sum(targets)


def _train_trajectory(
    model: DiT, config: GateTrainConfig, progress: bool, world: World, local_batch: int
) -> tuple[LazyGates, list[float]]:
    steps = config.steps
    torch.manual_seed(config.seed)
    arch = model.config
    gates = LazyGates(steps, arch.depth, arch.hidden_size, config.kind).to(world.device)
    optimizer = torch.optim.Adam(gates.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    labels = torch.randint(0, arch.num_classes, (config.pool,), generator=gen).to(world.device)
    noise = initial_noise(config.pool, (arch.in_channels, arch.input_size, arch.input_size), config.seed + 7919)
    noise = noise.to(world.device)
    targets = _reference_trajectories(model, config, world, noise, labels, progress)
    rho = _Rho(config, steps, arch.depth)
    order = config.forecast_order if config.forecast else 0

    def loss(gates: LazyGates, noise: torch.Tensor, labels: torch.Tensor, target: torch.Tensor):
        with world.autocast():
            final, scores = soft_trajectory(model, gates, noise, labels, config.cfg_scale, order, config.checkpoint)
        mse = torch.mean((final.float() - target) ** 2)
        penalty = sum(rho[m] * s.float().mean() for m, s in scores)
        return mse, penalty, torch.stack([s.detach().float().mean() for _, s in scores]).mean()

    objective = world.data_parallel(_Objective(gates, loss))
    mine = slice(world.rank * local_batch, (world.rank + 1) * local_batch)
    losses = []
    bar = tqdm(range(config.iterations), desc=f"gates ddim{steps} (trajectory)", disable=not progress)
    for _ in bar:
        idx = torch.randint(0, config.pool, (config.batch,), generator=gen)[mine]
        mse, penalty, mean_score = objective(noise[idx], labels[idx], targets[idx])
        loss_value = mse + penalty
        optimizer.zero_grad(set_to_none=True)
        loss_value.backward()
        optimizer.step()
        mean_score = float(world.mean(mean_score))
        rho.update(mean_score)
        losses.append(float(world.mean(mse.detach())))
        if len(losses) % 10 == 0:
            bar.set_postfix(mse=f"{sum(losses[-10:]) / 10:.2e}", score=f"{mean_score:.3f}", rho=f"{rho['mlp']:.1e}")
    return gates.eval().cpu(), losses


def _full_blocks(model: DiT, tokens: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    for block in model.blocks:
        tokens = block(tokens, c)
    return tokens


def _full_step(model: DiT, x: torch.Tensor, y_pair: torch.Tensor, s: dict, cfg_scale: float):
    """One full DDIM step that also returns every module's output (the caches)."""
    t_pair = torch.full((y_pair.shape[0],), s["t"], device=x.device)
    tokens, c = model.embed(torch.cat([x, x]), t_pair, y_pair)
    caches = {}
    for b, block in enumerate(model.blocks):
        mods = block.modulation(c)
        for m in MODULES:
            out = block.branch(m, block.branch_input(m, tokens, mods))
            caches[(b, m)] = out
            tokens = tokens + block.gate(m, mods).unsqueeze(1) * out
    eps = _guided_eps(model, tokens, c, cfg_scale)
    return caches, model.sampler.update(x, eps, s["alpha"], s["alpha_prev"])


MB = 2**20


def memory_estimate(
    arch: DiTConfig, config: GateTrainConfig, processes: int = 1, dtype: torch.dtype = torch.float32
) -> dict:
    """What one process holds at its peak while training gates for ``arch``, in MB: the frozen DiT
    in ``dtype``, the gates with their gradients and Adam moments, the reference pool and the
    autograd activations of one iteration. Activations are measured, not modelled: one soft-lazy
    step runs on meta tensors (shapes, no memory, no arithmetic) and every tensor autograd saves is
    counted, in float32 (an upper bound under bf16 autocast). Python, torch and a CUDA context come
    on top."""
    local = World(size=processes).split(config.batch, "batch")
    order = config.forecast_order if config.forecast else 0
    with torch.device("meta"):
        model = DiT(arch).eval().requires_grad_(False)
        gates = LazyGates(2, arch.depth, arch.hidden_size, config.kind)
        x = torch.zeros(local, arch.in_channels, arch.input_size, arch.input_size)
        y = torch.zeros(2 * local, dtype=torch.long)
    step = partial(_soft_step, model, gates, DDIMSchedule(2), y, config.cfg_scale, order)
    with torch.no_grad():
        _, _, state = step(0, x)
    # a later step: its inputs depend on the gates, so autograd saves what it needs for them too
    inputs = [t.clone().requires_grad_() for t in (x, *state)]
    saved: dict[int, torch.Tensor] = {}
    resident = {id(t) for t in (*model.parameters(), *model.buffers(), *gates.parameters())}

    def keep(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in resident and id(t._base) not in resident:  # weights are counted once, below
            saved[id(t)] = t
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        step(1, *inputs)
    sizes = [t.numel() * 4 for t in saved.values()]
    step_activations, crossing = sum(sizes), sum(t.numel() * 4 for t in inputs)
    working = 2 * max(sizes)  # gradients of the largest activation while a step's backward runs
    if config.objective == "local":
        activations = step_activations + working
    elif config.checkpoint:
        # one state per segment boundary, one per step of the segment whose backward runs
        span = checkpoint_span(config.steps)
        kept = math.ceil(config.steps / span) + span
        activations = kept * crossing + step_activations + 2 * crossing + working
    else:
        activations = (config.steps - 1) * step_activations + crossing + working
    weights = sum(t.numel() for t in (*model.parameters(), *model.buffers())) * torch.finfo(dtype).bits // 8
    gate_numel = sum(p.numel() for p in LazyGates(config.steps, arch.depth, arch.hidden_size, config.kind).parameters())
    pool = 2 * config.pool * x[0].numel() * 4 if config.objective == "trajectory" else 0
    parts = {
        "dit_weights_mb": weights / MB,
        "gates_and_adam_mb": gate_numel * 4 * 4 / MB,
        "reference_pool_mb": pool / MB,
        "activations_mb": activations / MB,
    }
    return {
        "model": arch.name,
        "processes": processes,
        "batch_per_process": local,
        "steps": config.steps,
        "objective": config.objective,
        "checkpoint": config.checkpoint,
        "dtype": str(dtype).removeprefix("torch."),
        **parts,
        "step_activations_mb": step_activations / MB,
        "crossing_state_per_step_mb": crossing / MB,
        "total_mb": sum(parts.values()),
    }


def save_gates(gates: LazyGates, path: str | Path, model: DiT, train_config: GateTrainConfig | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    meta = {
        "kind": gates.kind,
        "steps": gates.steps,
        "depth": gates.depth,
        "hidden": gates.hidden,
        "model_hash": weights_hash(model),
        "model_name": model.config.name,
        "sampler": f"ddim{gates.steps}",
        "train_config": asdict(train_config) if train_config else {},
    }
    state = {k: v.detach().contiguous() for k, v in gates.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={"lazydit": json.dumps(meta)}))
    return path


def load_gates(path: str | Path, model: DiT, steps: int | None = None) -> LazyGates:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise GateError(f"gate file {path} does not exist; train gates with `lazydit train-gates`")
    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {}).get("lazydit", "{}"))
    if not meta:
        raise GateError(f"{path} is not a lazydit gate file")
    if meta["model_hash"] != weights_hash(model):
        raise GateError(
            f"{path} was trained for another model (hash {meta['model_hash']}); "
            "train gates for this model with `lazydit train-gates`"
        )
    if steps is not None and meta["steps"] != steps:
        raise GateError(f"{path} is for DDIM {meta['steps']} steps, not {steps}")
    gates = LazyGates(meta["steps"], meta["depth"], meta["hidden"], meta["kind"])
    gates.load_state_dict(load_file(str(path)))
    return gates.eval()


def default_gates_path(
    steps: int, kind: str = "lazydit", objective: str = "trajectory", ratio: float | None = None
) -> Path:
    """Where the shipped gates live: lazy gates trained with the trajectory objective by default,
    ``objective="local"`` for the paper's one-step recipe, ``kind="router"`` for Learning-to-Cache;
    gates trained for a lazy ratio other than one half carry it in the name (``-r75``)."""
    from .checkpoints import DEFAULT_MODEL_DIR, DEFAULT_MODEL_NAME

    if kind not in GATE_KINDS or objective not in OBJECTIVES:
        raise GateError(f"no shipped gates of kind {kind!r} and objective {objective!r}")
    suffix = f"-{kind}" if kind != "lazydit" else ("-local" if objective == "local" else "")
    trained = "" if ratio is None or round(ratio * 100) == 50 else f"-r{round(ratio * 100)}"
    return DEFAULT_MODEL_DIR / f"gates{suffix}-{DEFAULT_MODEL_NAME}-ddim{steps}{trained}.safetensors"


SHIPPED_RATIOS = (0.5, 0.75)


def shipped_gates_for(steps: int, ratio: float | None, kind: str = "lazydit", objective: str = "trajectory") -> Path:
    """The shipped gate file trained for the lazy ratio nearest ``ratio`` (one half when None)
    among those that exist; the one-half file when none does."""
    wanted = 0.5 if ratio is None else ratio
    for trained in sorted(SHIPPED_RATIOS, key=lambda r: (abs(r - wanted), r)):
        path = default_gates_path(steps, kind, objective, trained)
        if path.is_file():
            return path
    return default_gates_path(steps, kind, objective)


@torch.no_grad()
def calibrate(
    model: DiT,
    gates: LazyGates,
    per_class: int = 4,
    seed: int = 1000,
    cfg_scale: float = 1.5,
    with_logits: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mean score per (step, block, module) over full-compute trajectories of every class.

    With ``with_logits`` also the mean pre-sigmoid score: trained gates often saturate (many cells
    score exactly 0 or 1 in float32), and the logits still rank cells the scores cannot tell apart.
    """
    n_cls = model.config.num_classes
    labels = torch.arange(n_cls).repeat_interleave(per_class)
    arch = model.config
    noise = initial_noise(len(labels), (arch.in_channels, arch.input_size, arch.input_size), seed)
    sums = torch.zeros(gates.steps, arch.depth, len(MODULES))
    logit_sums = torch.zeros_like(sums)

    def observe(step: int, block: int, module: str, h: torch.Tensor):
        sums[step, block, MODULES.index(module)] += gates.pair_score(step, block, module, h).mean()
        logit_sums[step, block, MODULES.index(module)] += gates.pair_logit(step, block, module, h).mean()

    sample(model, noise, labels, Plan.full(gates.steps, arch.depth, sampler=model.sampler), cfg_scale, decider=observe)
    return (sums, logit_sums) if with_logits else sums

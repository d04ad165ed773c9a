"""Caching policies, registered by name; each turns its parameters into a :class:`Plan`."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoints import weights_hash
from .model import MODULES, DiT
from .options import opt
from .plans import BASES, COMPUTE, Plan, PlanError, check_order
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
    forecast_basis: str | None = opt(
        None,
        "with --forecast: newton (the exact polynomial through the last computes) or taylor (TaylorSeer's "
        "expansion, as diffusers' hook computes it); default taylor for the taylorseer policy, newton otherwise",
        choices=BASES,
    )
    warmup: int | None = opt(None, "taylorseer: steps fully computed before the schedule starts (default 3)")
    start: str | None = opt(None, "search: plan JSON to refine (default: evenly spaced key steps at --ratio)")
    search_rounds: int = opt(2, "search: passes over the key steps and over every module's computes")
    check_samples: int = opt(
        0,
        "search: held-out noises (a seed of their own); a round of moves is kept only if it lowers their "
        "error too, else it is undone and that kind of move ends (0: no check)",
    )
    search_transfers: int = opt(
        0,
        "search: rounds of moving computes between modules (one module gives up a compute, another "
        "gains one in the middle of a gap; the budget is kept)",
    )
    calib_samples: int = opt(20, "search: calibration noises (their final samples are compared with full compute)")
    search_objective: str = opt(
        "psnr",
        "search: what the moves lower: psnr (minus the mean per-image PSNR of the final samples against full "
        "compute's, the fidelity measure the frontier reports) or mse (their mean squared error, which the "
        "worst images dominate)",
        choices=("psnr", "mse"),
    )
    gates: str | None = opt(
        None, "gate file (default: the shipped gates for --steps trained for the ratio nearest --ratio)"
    )
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
    if request.forecast_order != 1 and not (request.forecast or name == "taylorseer"):
        raise PlanError(f"--forecast-order {request.forecast_order} needs --forecast")
    if request.forecast_basis not in (None, "newton") and not (request.forecast or name == "taylorseer"):
        raise PlanError(f"--forecast-basis {request.forecast_basis} needs --forecast")
    plan = POLICIES[name](model, request)
    plan.base = {"name": model.config.name, "weights_hash": weights_hash(model)}
    plan.sampler = model.sampler
    if request.forecast and not plan.max_order:
        return plan.with_forecast(request.forecast_order, request.forecast_basis or "newton")
    return plan


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
    from .gates import calibrate, load_gates, shipped_gates_for

    path = req.gates or str(shipped_gates_for(req.steps, req.ratio, kind))
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


def taylorseer_schedule(steps: int, interval: int, warmup: int) -> list[int]:
    """TaylorSeer's steps that compute, as diffusers' hook schedules them: the first ``warmup``
    steps, then every ``interval``-th step counted from ``warmup + 1``."""
    return [k for k in range(steps) if k < warmup or (k - warmup - 1) % interval == 0]


@register_policy("taylorseer")
def taylorseer_policy(model: DiT, req: PlanRequest) -> Plan:
    """TaylorSeer: every module computes on the warm-up steps and then every n-th step, and is
    forecast in between by a Taylor expansion of order --forecast-order (the taylor basis unless
    --forecast-basis newton). --ratio picks the schedule whose lazy ratio is nearest: the
    interval, and (unless --warmup is given) a warm-up of 1-3 steps, the most evenly spaced
    computes first."""
    if req.interval is not None and req.ratio is not None:
        raise PlanError("taylorseer takes --interval or --ratio, not both")
    warmups = (req.warmup,) if req.warmup is not None else ((1, 2, 3) if req.ratio is not None else (3,))
    for warmup in warmups:
        if not 1 <= warmup < req.steps:
            raise PlanError(f"taylorseer --warmup {warmup}: give 1 to {req.steps - 1} fully computed steps")
    if req.ratio is not None:
        skip_count(req.steps, model.config.depth, req.ratio)  # refuses a ratio the steps cannot reach

        def rank(choice: tuple[int, int]) -> tuple:
            computed = taylorseer_schedule(req.steps, choice[1], choice[0])
            gaps = [b - a for a, b in itertools.pairwise([*computed, req.steps])]
            return abs(1 - len(computed) / req.steps - req.ratio), max(gaps), -choice[0], choice[1]

        warmup, interval = min(((w, n) for w in warmups for n in range(1, req.steps + 1)), key=rank)
    else:
        warmup, interval = warmups[0], req.interval or 4
    if interval < 1:
        raise PlanError("taylorseer needs --interval n >= 1")
    depth = model.config.depth
    computed = set(taylorseer_schedule(req.steps, interval, warmup))
    skips = {(k, b, m) for (k, b, m) in _cells(req.steps, depth) if k not in computed}
    params = {"interval": interval, "warmup": warmup, "order": req.forecast_order}
    plan = Plan.from_skips(req.steps, depth, skips, policy="taylorseer", params=params)
    return plan.with_forecast(req.forecast_order, req.forecast_basis or "taylor")


class _FinalError:
    """The search objective: how far a plan's final samples are from full compute's from the same
    calibration noises (their own seed, apart from any evaluation's): minus their mean per-image
    PSNR in dB (``psnr``, as :func:`lazydit.metrics.psnr` scores a table row) or their mean squared
    error (``mse``). The last trial's mean squared error is kept in ``mse`` either way.
    A trial that agrees with the accepted plan on its first steps resumes from that plan's state
    there instead of running them again (the executor's snapshots)."""

    def __init__(self, model: DiT, req: PlanRequest, samples: int | None = None, offset: int = 2000):
        from .diffusion import initial_noise
        from .executor import sample

        arch = model.config
        n = req.calib_samples if samples is None else samples
        if n < 1:
            raise PlanError("search needs --calib-samples of at least 1")
        if req.search_objective not in ("psnr", "mse"):
            raise PlanError(f"--search-objective must be psnr or mse, not {req.search_objective!r}")
        self.model, self.req, self.sample = model, req, sample
        self.noise = initial_noise(n, (arch.in_channels, arch.input_size, arch.input_size), req.seed + offset)
        self.labels = torch.arange(n) % arch.num_classes
        self.order = req.forecast_order if req.forecast else 0
        self.basis = req.forecast_basis or "newton"
        self.history = max(2, self.order + 1)
        with torch.no_grad():
            full = Plan.full(req.steps, arch.depth, sampler=model.sampler)
            self.reference = sample(model, self.noise, self.labels, full)
        self.kind = req.search_objective
        self.mse = self.accepted_mse = float("nan")
        self.evaluations = 0
        self.steps_run = 0
        self.accepted: tuple[list, list] | None = None  # (per-step actions, snapshots) of the accepted plan
        self.trial: tuple[list, list] | None = None

    def plan(self, computes: dict[tuple[int, str], set[int]]) -> Plan:
        depth = self.model.config.depth
        skips = {(k, b, m) for (b, m), steps in computes.items() for k in range(self.req.steps) if k not in steps}
        plan = Plan.from_skips(self.req.steps, depth, skips, sampler=self.model.sampler)
        return plan.with_forecast(self.order, self.basis) if self.order else plan

    def __call__(self, computes: dict[tuple[int, str], set[int]]) -> float:
        plan = self.plan(computes)
        actions = [tuple(row) for row in plan.cells]
        first, resume = 0, None
        if self.accepted is not None:
            done, states = self.accepted
            while first < plan.steps and actions[first] == done[first]:
                first += 1
            first = min(first, plan.steps - 1)
            resume = states[first] if first else None
            first = first if resume is not None else 0
        snapshots: list = []
        with torch.no_grad():
            final = self.sample(
                self.model, self.noise, self.labels, plan, snapshots=snapshots, resume=resume, history=self.history
            )
        kept = self.accepted[1][:first] if self.accepted is not None else []
        self.trial = (actions, kept + snapshots)
        self.evaluations += 1
        self.steps_run += plan.steps - first
        # lazydit.metrics.psnr's formula (that layer sits above this one); a test holds the two equal
        per_image = ((final - self.reference) ** 2).flatten(1).mean(1).double()
        self.mse = float(per_image.mean())
        if self.kind == "mse":
            return self.mse
        return float(-(10 * torch.log10(4.0 / per_image.clamp_min(1e-20))).mean())

    def accept(self) -> None:
        """The last trial becomes the plan later trials resume from."""
        self.accepted = self.trial
        self.accepted_mse = self.mse


def _spread(steps: int, count: int) -> list[int]:
    """``count`` key steps as evenly spaced as the step count allows, step 0 first."""
    return sorted({round(i * steps / count) for i in range(count)})


@register_policy("search")
def search_policy(model: DiT, req: PlanRequest) -> Plan:
    """Optimise the plan itself on the final-sample error of a few calibration noises.

    From --start (any plan, its budget kept) or from evenly spaced key steps at --ratio: first a
    coordinate descent over the key steps (every module computes on them; each key step moves a
    step earlier or later while that lowers the error), then over every module's own computes
    (one compute moves to a neighbouring step while that lowers the error). Every move keeps the
    number of computes, so the budget is exact. With --search-transfers, rounds of moving a
    compute from one module to another come between the two (a module's own count changes, the
    budget does not). With --check-samples, each round is kept only if it also lowers the error of
    held-out noises; the first that does not is undone and ends that kind of move. The objective
    (--search-objective: the final samples' mean per-image PSNR, or their mean squared error) runs the sampler the plan will run
    (reuse, or forecasts of --forecast-order in --forecast-basis)."""
    from tqdm import tqdm

    steps, depth = req.steps, model.config.depth
    if req.search_rounds < 0 or req.search_transfers < 0:
        raise PlanError("--search-rounds and --search-transfers must be 0 or more")
    rows = [(b, m) for b in range(depth) for m in MODULES]
    objective = _FinalError(model, req)
    if req.start:
        start = load_plan(req.start)
        start.check_model(model.config, steps)
        if req.ratio is not None and skip_count(steps, depth, req.ratio) != len(start.skipped_cells()):
            raise PlanError(
                f"--start {req.start} skips {len(start.skipped_cells())} modules but --ratio {req.ratio} asks for "
                f"{skip_count(steps, depth, req.ratio)}; drop --ratio to keep the start plan's budget"
            )
        computes = {(b, m): {k for k in range(steps) if start.action(k, b, m) == COMPUTE} for b, m in rows}
        key_rounds = 0
    else:
        ratio = req.ratio if req.ratio is not None else 0.5
        total = steps * len(rows) - skip_count(steps, depth, ratio)
        per_row, extra = divmod(total, len(rows))
        keys = _spread(steps, per_row)
        computes = _with_extra(keys, rows, extra, steps)
        key_rounds = req.search_rounds
    bar = tqdm(desc=f"search ddim{steps}", unit="plan", leave=False)
    best = objective(computes)
    objective.accept()
    bar.update()
    guard = _HeldOut(model, req, computes, best) if req.check_samples else None

    def keep() -> bool:
        """After a round that moved something: True to go on; False (its moves undone) when the
        held-out noises say the round made the plan worse."""
        nonlocal computes, best
        if guard is None or guard.improved(computes, best):
            return True
        computes, best = guard.computes, guard.fit_error
        objective(computes)  # resume from the kept plan again
        objective.accept()
        return False

    for _ in range(key_rounds):  # whole key steps
        keys = sorted(set.intersection(*computes.values()))
        extra = sum(len(c) for c in computes.values()) - len(keys) * len(rows)
        moved = False
        for i, key in enumerate(keys):
            if key == 0:
                continue
            for new in (key - 1, key + 1):
                if not 0 < new < steps or new in keys:
                    continue
                trial_keys = sorted({*keys[:i], new, *keys[i + 1 :]})
                trial = _with_extra(trial_keys, rows, extra, steps)
                error = _try(objective, trial, best, bar)
                if error is not None:
                    best, computes, keys, moved = error, trial, trial_keys, True
                    break
        if not moved or not keep():
            break
    for _ in range(req.search_transfers):  # computes moved between modules
        best, computes, moved = _transfer_round(objective, computes, best, steps, bar)
        if not moved or not keep():
            break
    for _ in range(req.search_rounds):  # each module's own computes
        moved = False
        for row in rows:
            for k in sorted(computes[row]):
                if k == 0:
                    continue
                for new in (k - 1, k + 1):
                    if not 0 < new < steps or new in computes[row]:
                        continue
                    trial = {**computes, row: (computes[row] - {k}) | {new}}
                    error = _try(objective, trial, best, bar)
                    if error is not None:
                        best, computes, moved = error, trial, True
                        break
        if not moved or not keep():
            break
    bar.close()
    skips = {(k, b, m) for (b, m), c in computes.items() for k in range(steps) if k not in c}
    params = {
        "ratio": len(skips) / (steps * len(rows)),
        "start": req.start,
        "calib_samples": req.calib_samples,
        "search_rounds": req.search_rounds,
        "search_transfers": req.search_transfers,
        "check_samples": req.check_samples,
        "search_objective": objective.kind,
        **(_check_params(objective.kind, guard) if guard else {}),
        "evaluations": objective.evaluations,
        "steps_run": objective.steps_run,
        "calib_mse": objective.accepted_mse,
        **({"calib_psnr_db": -best} if objective.kind == "psnr" else {}),
        "seed": req.seed,
    }
    return Plan.from_skips(steps, depth, skips, policy="search", params=params)


def _check_params(kind: str, guard: _HeldOut) -> dict:
    """The held-out noises' error at the start and at the end, in the objective's own terms."""
    if kind == "mse":
        return {"check_mse": guard.error, "check_mse_start": guard.start_error}
    return {"check_psnr_db": -guard.error, "check_psnr_db_start": -guard.start_error}


class _HeldOut:
    """The search's check on noises it does not fit (``check_samples`` of them, their own seed):
    the last plan that lowered their error, kept to fall back to."""

    def __init__(self, model: DiT, req: PlanRequest, computes: dict, fit_error: float):
        self.objective = _FinalError(model, req, samples=req.check_samples, offset=3000)
        self.computes, self.fit_error = computes, fit_error
        self.error = self.start_error = self.objective(computes)

    def improved(self, computes: dict, fit_error: float) -> bool:
        error = self.objective(computes)
        if error >= self.error:
            return False
        self.computes, self.fit_error, self.error = computes, fit_error, error
        return True


TRANSFER_SHORTLIST = 12  # the cheapest removals and the best additions paired up
TRANSFER_TRIALS = 40  # pairs tried per round, best predicted first


def _transfer_round(objective, computes: dict, best: float, steps: int, bar) -> tuple[float, dict, bool]:
    """One round of moving a compute from one module to another.

    Every single change is measured first: each module without each of its computes (step 0
    stays), and with one more compute in the middle of each of its gaps. Pairs of a cheap
    removal and a helpful addition in different modules are then tried, best predicted sum
    first; each pair that lowers the error is accepted, and the pairs after it are tried against
    the plan it made (those whose compute is gone or whose step is taken are passed over)."""
    removals, additions = [], []
    for row, have in computes.items():
        for k in sorted(have - {0}):
            removals.append((objective({**computes, row: have - {k}}) - best, row, k))
            bar.update()
        bounds = [*sorted(have), steps]
        for a, b in itertools.pairwise(bounds):
            if b - a >= 2:
                additions.append((objective({**computes, row: have | {(a + b) // 2}}) - best, row, (a + b) // 2))
                bar.update()
    removals.sort(key=lambda r: r[0])
    additions.sort(key=lambda a: a[0])
    pairs = sorted(
        (
            (lose + gain, giver, k, taker, new)
            for lose, giver, k in removals[:TRANSFER_SHORTLIST]
            for gain, taker, new in additions[:TRANSFER_SHORTLIST]
            if giver != taker
        ),
        key=lambda p: p[0],
    )
    moved = False
    for _, giver, k, taker, new in pairs[:TRANSFER_TRIALS]:
        if k not in computes[giver] or new in computes[taker]:
            continue
        trial = {**computes, giver: computes[giver] - {k}}
        trial[taker] = trial[taker] | {new}
        error = _try(objective, trial, best, bar)
        if error is not None:
            best, computes, moved = error, trial, True
    return best, computes, moved


def _try(objective, trial: dict, best: float, bar) -> float | None:
    """The trial's error when it beats ``best`` (the trial then becomes the accepted plan), else None."""
    error = objective(trial)
    bar.update()
    if error >= best:
        return None
    objective.accept()
    bar.set_postfix(error=f"{error:.3g}")
    return error


def _with_extra(keys: list[int], rows: list, extra: int, steps: int) -> dict:
    """Every row computes on ``keys``; the first ``extra`` rows also at the middle of the widest gap."""
    computes = {row: set(keys) for row in rows}
    bounds = [*keys, steps]
    start, end = max(itertools.pairwise(bounds), key=lambda gap: gap[1] - gap[0])
    middle = (start + end) // 2
    if extra and middle in keys:
        raise PlanError(f"no step is left between key steps {keys} for {extra} more computes")
    for row in rows[:extra]:
        computes[row].add(middle)
    return computes

"""The skip plan: for a DDIM sampler with N steps, what every (step, block, module) does.

Every caching policy produces one of these; the reference executor, the exporter and the
runtimes only ever read a plan, never the policy that made it. A cell is

* ``C`` compute the module,
* ``R`` reuse its cached output as it is,
* ``F`` (or ``1``), ``2``, ``3`` forecast it to that order: the Newton polynomial through the
  order + 1 last computed outputs of the module (their divided differences, as TaylorSeer
  keeps them), evaluated at this step. Its coefficients depend only on which steps computed,
  so they are fixed when the plan is made and stay exportable; an order-k forecast needs k + 1
  earlier computes of its module.

A plan's forecasts use one of two bases:

* ``newton`` (the default): the exact Newton polynomial through the last computes, so a module
  whose output is a degree-k polynomial in the step index is forecast exactly by order k;
* ``taylor``: TaylorSeer's expansion as diffusers' TaylorSeer cache hook computes it: at every
  compute each difference is formed from the one below it and the previous compute's, divided
  by the steps since that compute, ``D_i = (D_(i-1) - old D_(i-1)) / (t0 - t1)``, and a forecast
  ``s - t0`` steps later is ``sum_i D_i (s - t0)^i / i!``. With evenly spaced computes the two
  agree at order 1 and differ above it.

On disk a plan is JSON with one string per step and one two-letter code per block (attention
then MLP), e.g. ``"CC RC CF C2 ..."``. An order-1 forecast is written ``F``; version-1 plans
(before forecast orders) use only ``C``, ``R`` and ``F`` and still load. A plan with the taylor
basis is written as version 3 (``"forecast_basis": "taylor"``), so a reader that knows only the
Newton basis refuses it instead of forecasting otherwise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path

from .diffusion import PIXEL_SAMPLER, SamplerSettings
from .files import write_json
from .model import MODULES, DiTConfig

COMPUTE, REUSE, FORECAST = "C", "R", "F"
ACTIONS = (COMPUTE, REUSE, FORECAST)
MAX_ORDER = 3
# a cell letter -> its forecast order (0: compute or reuse); "F" and "1" are both order 1
ORDERS = {COMPUTE: 0, REUSE: 0, FORECAST: 1, "1": 1, "2": 2, "3": 3}
PLAN_FORMAT = "lazydit-plan"
PLAN_VERSION = 2
READS_VERSIONS = (1, 2, 3)  # version 1: forecasts of order 1 only; version 3: the taylor basis
BASES = ("newton", "taylor")


class PlanError(ValueError):
    """A plan that cannot be used; the message says what is wrong and what to do."""


def forecast_code(order: int) -> str:
    """The cell letter of a forecast of ``order`` (``F`` for order 1, as version-1 plans wrote it)."""
    check_order(order)
    return FORECAST if order == 1 else str(order)


def newton_coefficients(step: int, computed: list[int]) -> tuple[float, ...]:
    """The weights of the divided differences f[t0, t1], ..., f[t0, ..., tk] in the Newton
    polynomial through the computes ``computed`` (newest first, t0 > t1 > ...) evaluated at
    ``step``: ``c_i = (step - t0) ... (step - t(i-1))``. They depend only on the steps."""
    coefs, weight = [], 1.0
    for t in computed[:-1]:
        weight *= float(step - t)
        coefs.append(weight)
    return tuple(coefs)


def forecast_coefficients(step: int, computed: list[int], basis: str = "newton") -> tuple[float, ...]:
    """The weight of each cached difference, orders 1..k, in a forecast at ``step`` from the
    computes ``computed`` (newest first, k + 1 of them): Newton's products, or TaylorSeer's
    ``(step - t0)^i / i!``."""
    if basis == "newton":
        return newton_coefficients(step, computed)
    offset = float(step - computed[0])
    return tuple(offset**i / math.factorial(i) for i in range(1, len(computed)))


def difference_spans(computes: list[int], j: int, top: int, basis: str = "newton") -> tuple[float, ...]:
    """The divisors a module's ``j``-th compute (``computes`` ascending) uses to form its
    differences of orders 1..``top`` from the previous compute's: ``t0 - ti`` (Newton) or
    ``t0 - t1`` at every order (TaylorSeer)."""
    if basis == "newton":
        return tuple(float(computes[j] - computes[j - i]) for i in range(1, top + 1))
    return tuple(float(computes[j] - computes[j - 1]) for _ in range(1, top + 1))


def check_basis(basis: str) -> None:
    if basis not in BASES:
        raise PlanError(f"forecast basis {basis!r} is unknown; choose one of {BASES}")


def check_order(order: int) -> None:
    """Refuse an order no cache table is kept for (the exporter carries differences up to order 3)."""
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise PlanError(f"forecast order {order!r} is outside 1-{MAX_ORDER}; pick 1, 2 or 3")


@dataclass
class Plan:
    steps: int
    depth: int
    cells: list[list[str]]  # [step][block] -> two letters, attn then mlp
    policy: str = "ddim"
    params: dict = field(default_factory=dict)
    base: dict = field(default_factory=dict)  # the weights the plan was made for: name, weights_hash
    sampler: SamplerSettings = PIXEL_SAMPLER  # clamp x0 or not, guided channels: baked into every step
    basis: str = "newton"  # how forecasts weigh the cached differences (module docstring)

    def __post_init__(self) -> None:
        # "1" is an alias of "F": one spelling per order in memory and on disk
        if all(isinstance(row, list) and all(isinstance(c, str) for c in row) for row in self.cells):
            self.cells = [[c.replace("1", FORECAST) for c in row] for row in self.cells]
        self.validate()

    # construction ---------------------------------------------------------------------------
    @classmethod
    def full(cls, steps: int, depth: int, **kwargs) -> Plan:
        return cls(steps, depth, [["CC"] * depth for _ in range(steps)], **kwargs)

    @classmethod
    def from_skips(cls, steps: int, depth: int, skips: set[tuple[int, int, str]], **kwargs) -> Plan:
        """Build from a set of skipped (step, block, module) cells, all reused."""
        cells = [
            ["".join(REUSE if (k, b, m) in skips else COMPUTE for m in MODULES) for b in range(depth)]
            for k in range(steps)
        ]
        return cls(steps, depth, cells, **kwargs)

    # access ---------------------------------------------------------------------------------
    def action(self, step: int, block: int, module: str) -> str:
        """``C``, ``R`` or ``F`` (a forecast of any order: see :meth:`order`)."""
        code = self.cells[step][block][MODULES.index(module)]
        return FORECAST if ORDERS[code] else code

    def order(self, step: int, block: int, module: str) -> int:
        """The forecast order of a cell, 0 for a compute or a reuse."""
        return ORDERS[self.cells[step][block][MODULES.index(module)]]

    @property
    def max_order(self) -> int:
        """The highest forecast order in the plan (0 if it forecasts nothing)."""
        return max((ORDERS[c] for row in self.cells for code in row for c in code), default=0)

    def skipped_cells(self) -> list[tuple[int, int, str]]:
        return [
            (k, b, m)
            for k in range(self.steps)
            for b in range(self.depth)
            for m in MODULES
            if self.action(k, b, m) != COMPUTE
        ]

    def last_computed(self, step: int, block: int, module: str, count: int = MAX_ORDER + 1) -> list[int]:
        """The most recent steps before ``step`` that compute this module, newest first."""
        found = []
        for k in range(step - 1, -1, -1):
            if self.action(k, block, module) == COMPUTE:
                found.append(k)
                if len(found) == count:
                    break
        return found

    @property
    def lazy_ratio(self) -> float:
        return len(self.skipped_cells()) / (self.steps * self.depth * len(MODULES))

    def with_forecast(self, order: int = 1, basis: str = "newton") -> Plan:
        """Every skipped cell becomes a forecast of ``order``, or of the highest order its earlier
        computes allow (TaylorSeer's warm-up: order j needs j + 1 of them); a cell with fewer
        than two stays a reuse. ``basis``: how the forecasts weigh the differences."""
        check_order(order)
        check_basis(basis)
        cells = [
            ["".join(self._forecast_cell(k, b, m, order) for m in MODULES) for b in range(self.depth)]
            for k in range(self.steps)
        ]
        params = {**self.params, "forecast": True, **({"forecast_order": order} if order > 1 else {})}
        return Plan(self.steps, self.depth, cells, self.policy, params, dict(self.base), self.sampler, basis)

    def _forecast_cell(self, step: int, block: int, module: str, order: int) -> str:
        if self.action(step, block, module) == COMPUTE:
            return COMPUTE
        usable = min(order, len(self.last_computed(step, block, module, order + 1)) - 1)
        return forecast_code(usable) if usable >= 1 else REUSE

    # checks ---------------------------------------------------------------------------------
    def validate(self) -> None:
        if self.steps < 1 or self.depth < 1:
            raise PlanError(
                f"a plan needs at least one step and one block (got steps={self.steps}, depth={self.depth})"
            )
        if len(self.cells) != self.steps:
            raise PlanError(f"plan lists {len(self.cells)} steps but declares {self.steps}")
        for k, row in enumerate(self.cells):
            if len(row) != self.depth:
                raise PlanError(f"step {k} lists {len(row)} blocks but the plan declares depth {self.depth}")
            for b, code in enumerate(row):
                _check_code(k, b, code)
        check_basis(self.basis)
        if any(c != "CC" for c in self.cells[0]):
            raise PlanError("step 0 cannot skip: there is no cache yet")
        for k, b, m in self.skipped_cells():
            order = self.order(k, b, m)
            have = len(self.last_computed(k, b, m, order + 1))
            if order and have < order + 1:
                raise PlanError(
                    f"step {k} block {b} {m}: a forecast of order {order} needs {order + 1} earlier computes "
                    f"of this module, found {have}; compute it at an earlier step or lower the order"
                )

    def check_model(self, config: DiTConfig, steps: int | None = None) -> None:
        if self.depth != config.depth:
            raise PlanError(
                f"plan is for a {self.depth}-block model, this model has {config.depth} blocks; "
                "make a plan for this model with `lazydit plan`"
            )
        if steps is not None and steps != self.steps:
            raise PlanError(f"plan is for DDIM {self.steps} steps, asked for {steps}; drop --steps or make a new plan")

    # io -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The plan's JSON. MAC counts need the model's shapes: writers that have them add them
        (``lazydit.macs.plan_record``)."""
        data = {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION if self.basis == "newton" else 3,
            "policy": self.policy,
            "params": self.params,
            "sampler": {"name": "ddim", "steps": self.steps, "eta": 0.0, **self.sampler.to_dict()},
            "model": {**self.base, "depth": self.depth},
            "lazy_ratio": {"modules": self.lazy_ratio},
            "skipped": len(self.skipped_cells()),
            "cells": [" ".join(row) for row in self.cells],
        }
        if self.basis != "newton":
            data["forecast_basis"] = self.basis
        return data

    @classmethod
    def from_dict(cls, data: dict, policies: Container[str] | None = None) -> Plan:
        """``policies``: the policy names the caller accepts (the plan knows no policy itself)."""
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise PlanError(f'not a lazydit plan (expected "format": "{PLAN_FORMAT}")')
        version = data.get("version")
        if version not in READS_VERSIONS:
            raise PlanError(f"plan version {version} is not supported (this lazydit reads versions {READS_VERSIONS})")
        if policies is not None and data.get("policy") not in policies:
            raise PlanError(f"unknown policy {data.get('policy')!r}; known: {sorted(policies)}")
        if version == 1 and any(ch.isdigit() for row in data.get("cells", []) for ch in str(row)):
            raise PlanError("a version-1 plan forecasts to order 1 only (F); forecast orders need a version-2 plan")
        basis = data.get("forecast_basis", "newton")
        if (basis != "newton") != (version == 3):
            raise PlanError(
                f"a plan of version {version} with forecast basis {basis!r}: the taylor basis is written as version 3, "
                "the Newton basis as version 1 or 2"
            )
        sampler = data.get("sampler", {})
        if sampler.get("name") != "ddim" or sampler.get("eta", 0.0) != 0.0:
            raise PlanError(f"plan sampler {sampler} is not supported: lazydit samples with DDIM, eta 0")
        try:
            cells = [row.split() for row in data["cells"]]
            return cls(
                int(sampler["steps"]),
                int(data["model"]["depth"]),
                cells,
                data["policy"],
                dict(data.get("params", {})),
                {k: v for k, v in data["model"].items() if k != "depth"},
                SamplerSettings.from_dict(sampler),
                basis,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise PlanError(f"plan is missing or has a malformed field: {err}") from err

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, policies: Container[str] | None = None) -> Plan:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError as err:
            raise PlanError(f"plan file {path} does not exist; make one with `lazydit plan`") from err
        except json.JSONDecodeError as err:
            raise PlanError(f"{path}: not JSON ({err})") from err
        try:
            return cls.from_dict(data, policies)
        except PlanError as err:
            raise PlanError(f"{path}: {err}") from err


def _check_code(step: int, block: int, code: str) -> None:
    """A cell is two letters, attention then MLP; a digit outside 1-3 is a forecast order out of range."""
    if not isinstance(code, str) or len(code) != 2 or any(c not in ORDERS and not c.isdigit() for c in code):
        raise PlanError(
            f"step {step} block {block}: bad cell {code!r}; use two of C (compute), R (reuse), "
            f"F or 1, 2, 3 (forecast of that order)"
        )
    for c in code:
        if c not in ORDERS:
            raise PlanError(
                f"step {step} block {block}: cell {code!r} asks for a forecast of order {c}, outside 1-{MAX_ORDER}"
            )

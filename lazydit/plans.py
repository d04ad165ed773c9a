"""The skip plan: for a DDIM sampler with N steps, what every (step, block, module) does.

Every caching policy produces one of these; the reference executor, the exporter and the
runtimes only ever read a plan, never the policy that made it. A cell is

* ``C`` compute the module,
* ``R`` reuse its cached output as it is,
* ``F`` forecast it: the last computed output extrapolated to first order from the two last
  computed outputs (TaylorSeer). The coefficient depends only on which steps computed, so it is
  fixed when the plan is made and stays exportable.

On disk a plan is JSON with one string per step and one two-letter code per block (attention
then MLP), e.g. ``"CC RC CR ..."``.
"""

from __future__ import annotations

import json
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path

from .diffusion import PIXEL_SAMPLER, SamplerSettings
from .files import write_json
from .model import MODULES, DiTConfig

COMPUTE, REUSE, FORECAST = "C", "R", "F"
ACTIONS = (COMPUTE, REUSE, FORECAST)
PLAN_FORMAT = "lazydit-plan"
PLAN_VERSION = 1


class PlanError(ValueError):
    """A plan that cannot be used; the message says what is wrong and what to do."""


@dataclass
class Plan:
    steps: int
    depth: int
    cells: list[list[str]]  # [step][block] -> two letters, attn then mlp
    policy: str = "ddim"
    params: dict = field(default_factory=dict)
    base: dict = field(default_factory=dict)  # the weights the plan was made for: name, weights_hash
    sampler: SamplerSettings = PIXEL_SAMPLER  # clamp x0 or not, guided channels: baked into every step

    def __post_init__(self) -> None:
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
        return self.cells[step][block][MODULES.index(module)]

    def skipped_cells(self) -> list[tuple[int, int, str]]:
        return [
            (k, b, m)
            for k in range(self.steps)
            for b in range(self.depth)
            for m in MODULES
            if self.action(k, b, m) != COMPUTE
        ]

    def last_computed(self, step: int, block: int, module: str, count: int = 2) -> list[int]:
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

    def with_forecast(self) -> Plan:
        """Every skipped cell that has two earlier computes to extrapolate from becomes a forecast."""
        cells = []
        for k in range(self.steps):
            row = []
            for b in range(self.depth):
                row.append(
                    "".join(
                        FORECAST
                        if self.action(k, b, m) != COMPUTE and len(self.last_computed(k, b, m)) == 2
                        else self.action(k, b, m)
                        for m in MODULES
                    )
                )
            cells.append(row)
        params = {**self.params, "forecast": True}
        return Plan(self.steps, self.depth, cells, self.policy, params, dict(self.base), self.sampler)

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
                if len(code) != 2 or any(c not in ACTIONS for c in code):
                    raise PlanError(
                        f"step {k} block {b}: bad cell {code!r}; use two of C (compute), R (reuse), F (forecast)"
                    )
        if any(c != "CC" for c in self.cells[0]):
            raise PlanError("step 0 cannot skip: there is no cache yet")
        for k, b, m in self.skipped_cells():
            have = len(self.last_computed(k, b, m))
            if self.action(k, b, m) == FORECAST and have < 2:
                raise PlanError(f"step {k} block {b} {m}: forecast needs two earlier computes, found {have}")

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
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "policy": self.policy,
            "params": self.params,
            "sampler": {"name": "ddim", "steps": self.steps, "eta": 0.0, **self.sampler.to_dict()},
            "model": {**self.base, "depth": self.depth},
            "lazy_ratio": {"modules": self.lazy_ratio},
            "skipped": len(self.skipped_cells()),
            "cells": [" ".join(row) for row in self.cells],
        }

    @classmethod
    def from_dict(cls, data: dict, policies: Container[str] | None = None) -> Plan:
        """``policies``: the policy names the caller accepts (the plan knows no policy itself)."""
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise PlanError(f'not a lazydit plan (expected "format": "{PLAN_FORMAT}")')
        if data.get("version") != PLAN_VERSION:
            raise PlanError(f"plan version {data.get('version')} is not supported (this lazydit reads {PLAN_VERSION})")
        if policies is not None and data.get("policy") not in policies:
            raise PlanError(f"unknown policy {data.get('policy')!r}; known: {sorted(policies)}")
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

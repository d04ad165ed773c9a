"""Per-step static graphs: a plan's choices baked in as structure, caches as explicit tensors.

Each step becomes an ``nn.Module`` that runs the DiT for the class and the null class, combines
them with classifier-free guidance and takes the DDIM update; the per-step scalars (t, alpha,
alpha_prev) are inputs, so steps whose structure is the same share one graph.

Cache liveness, per (block, module): a graph reads ``cache:<b>.<m>`` only for a module it
reuses or forecasts, and reads ``cache:<b>.<m>.slope`` only to forecast. A computing step writes
the fresh output only if a later step reads it before the module computes again, and writes the
slope (fresh - previous output, per step) only if a forecast before the next compute needs it;
to do so it reads the previous output. A forecast is ``last + (k - k_last) * slope``: the
first-order extrapolation from the two last computed outputs, with every coefficient fixed by
the plan. (Storing the slope rather than the previous output keeps every output a computed
tensor: Core ML cannot return an input unchanged.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from lazydit.diffusion import ddim_update, guide
from lazydit.model import MODULES, DiT
from lazydit.plans import COMPUTE, FORECAST, REUSE, Plan

SCALARS = ("t", "alpha", "alpha_prev")


def slot(block: int, module: str, slope: bool = False) -> str:
    return f"cache:{block}.{module}" + (".slope" if slope else "")


def io_name(slot_name: str, output: bool = False) -> str:
    """Graph-level tensor names are identifiers; outputs get their own names (ONNX needs them distinct)."""
    base = slot_name.replace("cache:", "cache_").replace(".", "_")
    return ("new_" if output else "") + base


@dataclass(frozen=True)
class CellSpec:
    action: str
    coef: float = 0.0  # forecast: steps since the last compute
    write_last: bool = False  # computing step outputs its fresh value
    write_slope: bool = False  # computing step outputs (fresh - previous) * inv_span
    inv_span: float = 0.0  # 1 / steps between this compute and the previous one


@dataclass
class StepSpec:
    """Everything that makes one step's graph what it is (scalars excluded)."""

    cells: tuple[tuple[CellSpec, ...], ...]  # [block][module]
    key: tuple = field(init=False)

    def __post_init__(self) -> None:
        self.key = self.cells

    def inputs(self) -> list[tuple[str, str]]:
        """(graph input name, source slot or scalar) in graph order."""
        names = [("x", "x"), ("y", "y"), ("cfg_scale", "cfg_scale")] + [(s, s) for s in SCALARS]
        for b, row in enumerate(self.cells):
            for m, cell in zip(MODULES, row):
                if cell.action in (REUSE, FORECAST) or cell.write_slope:
                    names.append((io_name(slot(b, m)), slot(b, m)))
                if cell.action == FORECAST:
                    names.append((io_name(slot(b, m, True)), slot(b, m, True)))
        return names

    def outputs(self) -> list[tuple[str, str]]:
        names = [("x_next", "x")]
        for b, row in enumerate(self.cells):
            for m, cell in zip(MODULES, row):
                if cell.write_last:
                    names.append((io_name(slot(b, m), True), slot(b, m)))
                if cell.write_slope:
                    names.append((io_name(slot(b, m, True), True), slot(b, m, True)))
        return names

    @property
    def computed(self) -> int:
        return sum(c.action == COMPUTE for row in self.cells for c in row)


def step_specs(plan: Plan) -> list[StepSpec]:
    """Liveness analysis: which cache values each step must read and write."""
    depth = plan.depth
    cells = [[[None, None] for _ in range(depth)] for _ in range(plan.steps)]
    for b in range(depth):
        for mi, m in enumerate(MODULES):
            actions = [plan.action(k, b, m) for k in range(plan.steps)]
            computes = [k for k, a in enumerate(actions) if a == COMPUTE]
            for j, k in enumerate(computes):
                nxt = computes[j + 1] if j + 1 < len(computes) else plan.steps
                between = actions[k + 1 : nxt]
                write_slope = FORECAST in between
                # the next compute reads this value to form its slope if a forecast follows it
                nxt_end = computes[j + 2] if j + 2 < len(computes) else plan.steps
                read_by_next = j + 1 < len(computes) and FORECAST in actions[nxt + 1 : nxt_end]
                write_last = any(a in (REUSE, FORECAST) for a in between) or read_by_next
                inv_span = 1.0 / (k - computes[j - 1]) if write_slope else 0.0
                cells[k][b][mi] = CellSpec(COMPUTE, write_last=write_last, write_slope=write_slope, inv_span=inv_span)
            for k, a in enumerate(actions):
                if a != COMPUTE:
                    coef = float(k - plan.last_computed(k, b, m, 1)[0]) if a == FORECAST else 0.0
                    cells[k][b][mi] = CellSpec(a, coef=coef)
    return [StepSpec(tuple(tuple(row) for row in step)) for step in cells]


class StepGraph(nn.Module):
    """One denoising step with guidance and the DDIM update; inputs/outputs follow ``spec``."""

    def __init__(self, model: DiT, spec: StepSpec):
        super().__init__()
        self.model = model
        self.spec = spec
        self.input_names = [n for n, _ in spec.inputs()]
        self.output_names = [n for n, _ in spec.outputs()]

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feed = dict(zip(self.input_names, args))
        x, y = feed["x"], feed["y"]
        model = self.model
        null = torch.full_like(y, model.config.num_classes)
        t = feed["t"].expand(2)
        tokens, c = model.embed(torch.cat([x, x]), t, torch.cat([y, null]))
        written: dict[str, torch.Tensor] = {}
        for b, block in enumerate(model.blocks):
            mods = block.modulation(c)
            for m, cell in zip(MODULES, self.spec.cells[b]):
                last_name = io_name(slot(b, m))
                if cell.action == COMPUTE:
                    out = block.branch(m, block.branch_input(m, tokens, mods))
                    if cell.write_last:
                        written[io_name(slot(b, m), True)] = out
                    if cell.write_slope:
                        written[io_name(slot(b, m, True), True)] = (out - feed[last_name]) * cell.inv_span
                elif cell.action == REUSE:
                    out = feed[last_name]
                else:
                    out = feed[last_name] + cell.coef * feed[io_name(slot(b, m, True))]
                tokens = tokens + block.gate(m, mods).unsqueeze(1) * out
        eps = model.eps(model.head(tokens, c))
        x_next = ddim_update(x, guide(eps[:1], eps[1:], feed["cfg_scale"]), feed["alpha"], feed["alpha_prev"])
        return (x_next, *(written[n] for n in self.output_names[1:]))


class DecodeGraph(nn.Module):
    """Final sample in [-1, 1] -> uint8 image, [1, H, W] grey or [1, H, W, 3] RGB."""

    input_names: ClassVar[list[str]] = ["x"]
    output_names: ClassVar[list[str]] = ["image"]

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        img = torch.round((torch.clamp(x, -1.0, 1.0) + 1.0) * 127.5)
        # a latent model's timing bundle has no VAE: its first three channels stand in for RGB
        img = img[:, 0] if self.channels == 1 else img[:, :3].permute(0, 2, 3, 1)
        return img.to(torch.uint8)


def example_inputs(model: DiT, spec: StepSpec) -> tuple[torch.Tensor, ...]:
    c = model.config
    shapes = {
        "x": torch.zeros(1, c.in_channels, c.input_size, c.input_size),
        "y": torch.zeros(1, dtype=torch.long),
        "cfg_scale": torch.ones(1),
        **{s: torch.ones(1) * 0.5 for s in SCALARS},
    }
    # one tensor per input: torch.export treats a tensor passed twice as one aliased input
    return tuple(shapes[name] if name in shapes else torch.zeros(2, c.num_tokens, c.hidden_size)
                 for name, _ in spec.inputs())


def cache_shape(model: DiT) -> list[int]:
    return [2, model.config.num_tokens, model.config.hidden_size]

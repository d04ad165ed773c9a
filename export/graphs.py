"""Per-step static graphs: a plan's choices baked in as structure, caches as explicit tensors.

Each step becomes an ``nn.Module`` that runs the DiT for the class and the null class, combines
them with classifier-free guidance and takes the DDIM update; the per-step scalars (t, alpha,
alpha_prev) are inputs, so steps whose structure is the same share one graph. A step is a chain
of pieces (``Pieces``: embed, which also forms every branch's adaLN gate in one matrix product;
a computed branch; a run of consecutive skipped branches, which is weightless; finish) glued by
the plan, so that a backend can compile each piece once for every step that uses it, and a
skipped branch costs only its multiply-add.

A module's cache is its Newton table at its last compute t0 (earlier computes t1, t2, t3):
``cache:<b>.<m>`` the output f[t0], ``cache:<b>.<m>.slope`` the first divided difference
f[t0, t1], ``cache:<b>.<m>.d2`` and ``.d3`` the second and third, f[t0, ..., ti]. A forecast of
order k at step s is ``f[t0] + sum_i c_i * f[t0, ..., ti]`` for i = 1..k with
``c_i = (s - t0) ... (s - t(i-1))``: the polynomial through the k + 1 last computed outputs, every
coefficient fixed by the plan (order 1 is ``last + (s - t0) * slope``).

Cache liveness, per (block, module): a graph reads ``cache:<b>.<m>`` for a module it reuses,
and the table up to order k for one it forecasts to order k. A computing step outputs the table
up to the highest order that a later step reads before the module computes again, where the
next compute reads order i - 1 to form its order i: ``d_i = (d_(i-1) - old d_(i-1)) / (t0 - ti)``.
So it reads the old table below that order, and outputs nothing when no later step reads it.
A plan with the taylor basis keeps TaylorSeer's differences in the same slots instead: each
divided by the steps since the previous compute, ``D_i = (D_(i-1) - old D_(i-1)) / (t0 - t1)``,
and forecast with ``c_i = (s - t0)^i / i!``; only the fixed coefficients change.
(Storing divided differences rather than earlier outputs keeps every output a computed tensor:
Core ML cannot return an input unchanged.)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from lazydit.diffusion import SamplerSettings
from lazydit.model import MODULES, DiT, DiTBlock, modulate, timestep_frequencies, unpatchify
from lazydit.plans import COMPUTE, FORECAST, Plan, difference_spans, forecast_coefficients

SCALARS = ("t", "alpha", "alpha_prev")


def slot(block: int, module: str, order: int = 0) -> str:
    """The slot of a module's divided difference of ``order`` (0: its last computed output)."""
    return f"cache:{block}.{module}" + ("", ".slope", ".d2", ".d3")[order]


def io_name(slot_name: str, output: bool = False) -> str:
    """Graph-level tensor names are identifiers; outputs get their own names (ONNX needs them distinct)."""
    base = slot_name.replace("cache:", "cache_").replace(".", "_")
    return ("new_" if output else "") + base


@dataclass(frozen=True)
class CellSpec:
    action: str
    coefs: tuple[float, ...] = ()  # forecast: the Newton coefficient of each divided difference, orders 1..k
    writes: int = -1  # computing step outputs its divided differences of orders 0..writes (-1: none)
    inv_spans: tuple[float, ...] = ()  # computing: 1 / (this compute - the i-th previous one), i = 1..writes

    def reads(self) -> range:
        """The orders of the module's cached table this cell reads."""
        if self.action == COMPUTE:
            return range(max(self.writes, 0))  # the old table, to form the new one
        return range(len(self.coefs) + 1)


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
                names += [(io_name(slot(b, m, i)), slot(b, m, i)) for i in cell.reads()]
        return names

    def outputs(self) -> list[tuple[str, str]]:
        names = [("x_next", "x")]
        for b, row in enumerate(self.cells):
            for m, cell in zip(MODULES, row):
                names += [(io_name(slot(b, m, i), True), slot(b, m, i)) for i in range(cell.writes + 1)]
        return names

    @property
    def computed(self) -> int:
        return sum(c.action == COMPUTE for row in self.cells for c in row)


def step_specs(plan: Plan) -> list[StepSpec]:
    """Liveness analysis: which cache values each step must read and write."""
    cells = [[[None, None] for _ in range(plan.depth)] for _ in range(plan.steps)]
    for b in range(plan.depth):
        for mi, m in enumerate(MODULES):
            computes = [k for k in range(plan.steps) if plan.action(k, b, m) == COMPUTE]
            for j, (k, top) in enumerate(zip(computes, _table_orders(plan, b, m, computes))):
                spans = tuple(1.0 / span for span in difference_spans(computes, j, top, plan.basis))
                cells[k][b][mi] = CellSpec(COMPUTE, writes=top, inv_spans=spans)
            for k in (k for k in range(plan.steps) if plan.action(k, b, m) != COMPUTE):
                order = plan.order(k, b, m)
                computed = plan.last_computed(k, b, m, order + 1)
                coefs = forecast_coefficients(k, computed, plan.basis) if order else ()
                cells[k][b][mi] = CellSpec(plan.action(k, b, m), coefs=coefs)
    return [StepSpec(tuple(tuple(row) for row in step)) for step in cells]


def _table_orders(plan: Plan, block: int, module: str, computes: list[int]) -> list[int]:
    """For each compute of the module, the highest divided difference it must output (-1: none):
    what the skips before the next compute read (a reuse order 0, a forecast its order), and one
    below what the next compute outputs (it forms its order i from this one's i - 1)."""
    tops = [-1] * len(computes)
    for j in range(len(computes) - 1, -1, -1):
        end = computes[j + 1] if j + 1 < len(computes) else plan.steps
        reads = [plan.order(k, block, module) for k in range(computes[j] + 1, end)]
        tops[j] = max([-1, *reads, tops[j + 1] - 1 if j + 1 < len(computes) else -1])
    return tops


@dataclass(frozen=True)
class MethodTable:
    """Which graph every step runs: the plan's liveness analysis, made once per export and read
    by the manifest, the graphs and the golden vectors alike."""

    specs: list[StepSpec]  # one per step
    names: dict[tuple, str]  # one method name per distinct spec, after the first step that uses it

    @classmethod
    def of(cls, plan: Plan) -> MethodTable:
        specs = step_specs(plan)
        names: dict[tuple, str] = {}
        for k, spec in enumerate(specs):
            names.setdefault(spec.key, f"step_{k:02d}")
        return cls(specs, names)

    @property
    def step_methods(self) -> list[str]:
        return [self.names[s.key] for s in self.specs]

    def methods(self) -> dict[str, StepSpec]:
        """Each distinct method with its spec, in the order steps first use them."""
        unique: dict[str, StepSpec] = {}
        for spec in self.specs:
            unique.setdefault(self.names[spec.key], spec)
        return unique


def _layer_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm without affine parameters from XNNPACK's operators: it has no layer-norm node,
    but a 4-D mean over the two innermost dimensions, which with a trailing unit dimension is the
    mean over the hidden size."""
    b, n, h = x.shape
    x4 = x.reshape(b, n, h, 1)
    centred = x4 - x4.mean(dim=(2, 3), keepdim=True)
    var = (centred * centred).mean(dim=(2, 3), keepdim=True)
    return (centred * torch.rsqrt(var + eps)).reshape(b, n, h)


def _rows(linear: nn.Linear, index: int, count: int) -> nn.Linear:
    """The ``index``-th of ``count`` equal output chunks of ``linear`` as a Linear of its own."""
    size = linear.out_features // count
    part = nn.Linear(linear.in_features, size)
    with torch.no_grad():
        part.weight.copy_(linear.weight[index * size : (index + 1) * size])
        part.bias.copy_(linear.bias[index * size : (index + 1) * size])
    return part


def _fold_one(scale: nn.Linear) -> None:
    """adaLN's ``1 + scale`` folded into the scale rows' bias (one add fewer per call)."""
    with torch.no_grad():
        scale.bias += 1.0


def _silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU as x * sigmoid(x): XNNPACK runs it in fp16 too (the fp16 silu op is decomposed
    through fp32 casts that stay outside the delegate)."""
    return nn.functional.silu(x) if x.dtype == torch.float32 else x * torch.sigmoid(x)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation, from XNNPACK's fp16 operators (it has no fp16 gelu node)."""
    if x.dtype == torch.float32:
        return nn.functional.gelu(x, approximate="tanh")
    return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def _mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return mlp.fc2(_gelu_tanh(mlp.fc1(x)))


def _vector(linear: nn.Linear, c: torch.Tensor) -> torch.Tensor:
    """A modulation vector as [batch, 1, hidden] (a reshape: XNNPACK unsqueezes only the last dim)."""
    v = linear(c)
    return v.reshape(v.shape[0], 1, v.shape[1])


class _Piece(nn.Module):
    """A piece runs the model's own operations, so that its results are the eager sampler's up
    to float rounding; ``use_xnnpack`` switches it to the same computation written with
    XNNPACK's operators only (one delegate per piece)."""

    xnnpack = False
    dtype = torch.float32  # the piece's compute dtype (its tensors between pieces)

    def use_xnnpack(self) -> None:
        self.xnnpack = True


def _gate_rows(model: DiT) -> nn.Linear:
    """Every block's two adaLN gates as one Linear: output ``2 * block + module`` of ``cells``,
    so that one matrix product per step gives every gate, and a skipped branch costs no weights."""
    size, parts = model.config.hidden_size, []
    for block in model.blocks:
        ada = block.adaLN_modulation[1]
        parts += [_rows(ada, 3 * MODULES.index(m) + 2, 6) for m in MODULES]
    gates = nn.Linear(size, size * len(parts))
    with torch.no_grad():
        gates.weight.copy_(torch.cat([p.weight for p in parts]))
        gates.bias.copy_(torch.cat([p.bias for p in parts]))
    return gates


def cell_index(block: int, module: str) -> int:
    return 2 * block + MODULES.index(module)


class EmbedPiece(_Piece):
    """(x, t, label embeddings) -> (tokens, silu(c), *gates) for the class and the null class:
    one [2, 1, hidden] gate per block branch, in ``cell_index`` order, all from one matrix product.
    The conditioning ``c`` only ever enters the model through SiLU, so SiLU is taken once here."""

    def __init__(self, model: DiT):
        super().__init__()
        self.x_embedder, self.t_embedder, self.pos = model.x_embedder, model.t_embedder, model.pos_embed
        self.freq_shift = model.config.timestep_freq_shift
        self.gates = _gate_rows(model)

    def use_xnnpack(self) -> None:
        super().use_xnnpack()
        # frequencies as a constant (no arange in the graph); the class and null rows share the
        # tokens, a broadcast, as XNNPACK cannot concatenate a tensor with itself
        dim = self.t_embedder.frequency_embedding_size
        self.register_buffer("freqs", timestep_frequencies(dim, self.freq_shift).reshape(1, -1))
        self.register_buffer("pair", torch.ones(2, 1, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y_emb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.xnnpack:
            tokens = self.x_embedder(torch.cat([x, x])) + self.pos
            s = nn.functional.silu(self.t_embedder(t.expand(2)) + y_emb)
        else:
            x, t = x.to(self.dtype), t.to(self.dtype)
            tok = self.x_embedder.proj(x)
            tokens = tok.reshape(1, tok.shape[1], -1).permute(0, 2, 1) + self.pos
            args = t.reshape(1, 1) * self.freqs
            freq = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
            mlp = self.t_embedder.mlp
            s = _silu(mlp[2](_silu(mlp[0](freq))) + y_emb)
            tokens = tokens * self.pair
        gates = self.gates(s)
        gates = gates.reshape(gates.shape[0], -1, s.shape[1])  # static slices: XNNPACK has no select
        return (tokens, s, *(gates[:, i : i + 1] for i in range(gates.shape[1])))


class BranchPiece(_Piece):
    """One computed branch of one block: (tokens, silu(c), gate) -> (tokens + gate * out, out)."""

    def __init__(self, block: DiTBlock, module: str):
        super().__init__()
        # only this branch's layers: a copy of the piece copies no other weights
        self.module = module
        self.norm = block.norm1 if module == "attn" else block.norm2
        self.layer = block.attn if module == "attn" else block.mlp
        ada, first = block.adaLN_modulation[1], 3 * MODULES.index(module)
        self.shift, self.scale = _rows(ada, first, 6), _rows(ada, first + 1, 6)

    def use_xnnpack(self) -> None:
        super().use_xnnpack()
        _fold_one(self.scale)

    def forward(self, tokens: torch.Tensor, s: torch.Tensor, gate: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.xnnpack:
            h = modulate(self.norm(tokens), self.shift(s), self.scale(s))
            out = self.layer(h)
        else:
            h = _layer_norm(tokens, self.norm.eps) * _vector(self.scale, s) + _vector(self.shift, s)
            out = self._attention(h) if self.module == "attn" else _mlp(self.layer, h)
        return tokens + gate * out, out

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention with 3-D batched matmuls over (batch x heads)."""
        a = self.layer
        b, n, width = x.shape
        heads, dim = a.num_heads, a.head_dim
        qkv = a.qkv(x)

        def split(i: int) -> torch.Tensor:
            part = qkv[:, :, i * width : (i + 1) * width].reshape(b, n, heads, dim)
            return part.permute(0, 2, 1, 3).reshape(b * heads, n, dim)

        q, k, v = split(0), split(1), split(2)
        attn = torch.softmax(torch.bmm(q * a.scale, k.permute(0, 2, 1)), dim=-1)
        out = torch.bmm(attn, v).reshape(b, heads, n, dim).permute(0, 2, 1, 3).reshape(b, n, width)
        return a.proj(out)


# A skipped cell in a run: (cell index, the forecast's Newton coefficients, or None for a reuse)
RunCell = tuple[int, tuple[float, ...] | None]


class SkipRun(_Piece):
    """Consecutive skipped branches of one step as one weightless piece:
    (tokens, *per branch: gate, value[, d1, ..., dk]) -> tokens + sum of gate * value, where a
    reused branch's value is its cached output and a forecast one's
    ``last + c1 * d1 + ... + ck * dk`` (the coefficients fixed). It does not depend on where in
    the model the run is: every run with the same actions and coefficients is the same piece."""

    def __init__(self, coefs: tuple[tuple[float, ...] | None, ...]):
        super().__init__()
        self.coefs = coefs

    @property
    def arity(self) -> int:
        return sum(2 + len(c or ()) for c in self.coefs)

    def forward(self, tokens: torch.Tensor, *operands: torch.Tensor) -> tuple[torch.Tensor]:
        i = 0
        for coefs in self.coefs:
            gate, value = operands[i], operands[i + 1]
            for order, coef in enumerate(coefs or (), start=1):
                value = value + coef * operands[i + 1 + order]
            i += 2 + len(coefs or ())
            tokens = tokens + gate * value
        return (tokens,)

    @staticmethod
    def key(cells: tuple[RunCell, ...]) -> str:
        """A module name for the run: r (reuse) or f<c1>[x<c2>...] (forecast) per branch."""
        return "_".join("r" if c is None else "f" + "x".join(_number(v) for v in c) for _, c in cells)


def _number(value: float) -> str:
    return f"{value:g}".replace(".", "p").replace("-", "m").replace("+", "")


class FinishPiece(_Piece):
    """(tokens, silu(c), x, cfg_scale, alpha, alpha_prev) -> x_next: final layer, guidance, DDIM update."""

    def __init__(self, model: DiT, sampler: SamplerSettings):
        super().__init__()
        self.final, self.config, self.sampler = model.final_layer, model.config, sampler
        ada = self.final.adaLN_modulation[1]
        self.shift, self.scale = _rows(ada, 0, 2), _rows(ada, 1, 2)

    def use_xnnpack(self) -> None:
        super().use_xnnpack()
        _fold_one(self.scale)

    def forward(self, tokens, s, x, cfg_scale, alpha, alpha_prev) -> tuple[torch.Tensor]:
        cfg = self.config
        if not self.xnnpack:
            h = modulate(self.final.norm_final(tokens), self.shift(s), self.scale(s))
            out = unpatchify(self.final.linear(h), cfg.patch_size, cfg.out_channels)
        else:
            out = self.final.linear(_layer_norm(tokens) * _vector(self.scale, s) + _vector(self.shift, s))
            p, side, ch = cfg.patch_size, cfg.input_size // cfg.patch_size, cfg.out_channels
            # [2, (h w), (p q c)] -> [2, (h p), (w q), c] -> [2, c, (h p), (w q)], in 4-D permutes
            out = out.reshape(2 * side, side, p, p * ch).permute(0, 2, 1, 3).reshape(2, side * p, side * p, ch)
            out = out.permute(0, 3, 1, 2).to(torch.float32)  # guidance and the update in fp32
        eps = out[:, : cfg.in_channels] if cfg.out_channels != cfg.in_channels else out
        return (self.sampler.update(x, self.sampler.guide(eps[:1], eps[1:], cfg_scale), alpha, alpha_prev),)


class Pieces(nn.Module):
    """The building blocks every step graph is made of, each with tensor-only inputs and outputs:
    the ExecuTorch writer lowers each piece once and every step method calls the lowered pieces,
    so a piece shared by many steps is converted and stored once. Every weight lives in exactly
    one piece: the gates in ``embed``, a branch's shift, scale and layers in its compute piece;
    the runs of skipped branches (``runs``, added by the step graphs that need them) hold none."""

    def __init__(self, model: DiT, sampler: SamplerSettings):
        super().__init__()
        self.config = model.config
        self.embed = EmbedPiece(model)
        self.compute, self.runs = nn.ModuleDict(), nn.ModuleDict()
        for b, block in enumerate(model.blocks):
            for m in MODULES:
                self.compute[piece_key(b, m)] = BranchPiece(block, m)
        self.finish = FinishPiece(model, sampler)

    dtype = torch.float32

    def run(self, cells: tuple[RunCell, ...]) -> str:
        """The name of the run piece for these skipped cells, made on first use."""
        key = SkipRun.key(cells)
        if key not in self.runs:
            self.runs[key] = SkipRun(tuple(coef for _, coef in cells))
        return key

    def for_xnnpack(self, name: str, dtype: torch.dtype = torch.float32) -> _Piece:
        """A copy of the piece called ``name`` written with XNNPACK's operators only (same
        weights, same results up to rounding), computing in ``dtype`` (fp16: weights and
        activations in half precision; the sample ``x`` and the DDIM update stay fp32). One
        piece at a time, so that converting a large model never holds a second copy of it."""
        piece = copy.deepcopy(self.get_submodule(name))
        piece.use_xnnpack()
        piece.to(dtype)
        piece.dtype = dtype
        return piece.eval()

    def example(self, name: str, dt: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
        """Example inputs of the piece called ``name`` (``embed``, ``compute.<key>``, ``runs.<key>``
        ...) computing in ``dt`` (default: these pieces' dtype)."""
        c, dt = self.config, dt or self.dtype
        tokens, cond, one = (
            torch.zeros(2, c.num_tokens, c.hidden_size, dtype=dt),
            torch.zeros(2, c.hidden_size, dtype=dt),
            torch.ones(1),
        )
        gate = torch.zeros(2, 1, c.hidden_size, dtype=dt)
        x = torch.zeros(1, c.in_channels, c.input_size, c.input_size)
        kind, _, key = name.partition(".")
        if kind == "runs":
            # one tensor per input: torch.export treats a tensor passed twice as one aliased input
            operands = []
            for coefs in self.runs[key].coefs:
                operands += [gate.clone(), tokens.clone()] + [tokens.clone() for _ in coefs or ()]
            return (tokens, *operands)
        return {
            "embed": (x, one, cond),
            "compute": (tokens, cond, gate),
            "finish": (tokens, cond, x.clone(), one, one * 0.5, one * 0.5),
        }[kind]


def piece_key(block: int, module: str) -> str:
    return f"{block}_{module}"


class StepGraph(nn.Module):
    """One denoising step with guidance and the DDIM update; inputs/outputs follow ``spec``.

    The graph is a chain of pieces (``Pieces``) glued by the plan: a computed branch calls its
    compute piece, and each run of consecutive skipped branches one run piece that adds their
    cached (or forecast) outputs times their gates."""

    def __init__(self, model: DiT, spec: StepSpec, pieces: nn.Module, cache_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.labels = model.y_embedder.embedding_table
        self.null_class = model.config.num_classes
        self.pieces = pieces
        self.spec = spec
        self.cache_dtype = cache_dtype
        self.input_names = [n for n, _ in spec.inputs()]
        self.output_names = [n for n, _ in spec.outputs()]
        self.chain = self._chain(spec)
        for kind, what in self.chain:
            if kind == "runs":
                pieces.run(what)

    @staticmethod
    def _chain(spec: StepSpec) -> list[tuple[str, object]]:
        """("compute", (block, module)) and ("runs", cells) in block order."""
        chain: list[tuple[str, object]] = []
        pending: list[RunCell] = []
        for b, row in enumerate(spec.cells):
            for m, cell in zip(MODULES, row):
                if cell.action == COMPUTE:
                    if pending:
                        chain.append(("runs", tuple(pending)))
                        pending = []
                    chain.append(("compute", (b, m)))
                else:
                    pending.append((cell_index(b, m), cell.coefs if cell.action == FORECAST else None))
        if pending:
            chain.append(("runs", tuple(pending)))
        return chain

    def with_pieces(self, pieces: nn.Module) -> StepGraph:
        """The same step calling other implementations of the pieces (e.g. lowered ones)."""
        graph = copy.copy(self)
        graph._modules = {**self._modules, "pieces": pieces}
        return graph

    def used_pieces(self) -> list[str]:
        names = ["embed", "finish"]
        for kind, what in self.chain:
            names.append(f"compute.{piece_key(*what)}" if kind == "compute" else f"runs.{SkipRun.key(what)}")
        return names

    def _table(self, block: int, module: str, cell: CellSpec, out: torch.Tensor, feed: dict) -> dict:
        """A computing cell's new divided differences, orders 0..``cell.writes``, each from the
        one below it and the old table's: ``(new d(i-1) - old d(i-1)) / (t0 - ti)``."""
        dt, written, value = self.pieces.dtype, {}, out
        for i in range(cell.writes + 1):
            if i:
                value = (value - feed[io_name(slot(block, module, i - 1))].to(dt)) * cell.inv_spans[i - 1]
            written[io_name(slot(block, module, i), True)] = value.to(self.cache_dtype)
        return written

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feed = dict(zip(self.input_names, args))
        x, y = feed["x"], feed["y"]
        pieces = self.pieces
        dt = pieces.dtype  # casts between equal dtypes trace to nothing
        y_emb = self.labels(torch.cat([y, torch.full_like(y, self.null_class)])).to(dt)
        tokens, s, *gates = pieces.embed(x, feed["t"], y_emb)
        written: dict[str, torch.Tensor] = {}
        cells = self.spec.cells
        for kind, what in self.chain:
            if kind == "runs":
                operands = []
                for index, coefs in what:
                    b, m = divmod(index, 2)
                    operands.append(gates[index])
                    operands += [feed[io_name(slot(b, MODULES[m], i))].to(dt) for i in range(len(coefs or ()) + 1)]
                tokens = pieces.runs[SkipRun.key(what)](tokens, *operands)[0]
                continue
            b, m = what
            cell = cells[b][MODULES.index(m)]
            tokens, out = pieces.compute[piece_key(b, m)](tokens, s, gates[cell_index(b, m)])
            written.update(self._table(b, m, cell, out, feed))
        x_next = pieces.finish(tokens, s, x, feed["cfg_scale"], feed["alpha"], feed["alpha_prev"])[0]
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


def example_inputs(model: DiT, spec: StepSpec, cache_dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    c = model.config
    shapes = {
        "x": torch.zeros(1, c.in_channels, c.input_size, c.input_size),
        "y": torch.zeros(1, dtype=torch.long),
        "cfg_scale": torch.ones(1),
        **{s: torch.ones(1) * 0.5 for s in SCALARS},
    }
    # one tensor per input: torch.export treats a tensor passed twice as one aliased input
    return tuple(
        shapes[name] if name in shapes else torch.zeros(2, c.num_tokens, c.hidden_size, dtype=cache_dtype)
        for name, _ in spec.inputs()
    )


def cache_shape(model: DiT) -> list[int]:
    return [2, model.config.num_tokens, model.config.hidden_size]

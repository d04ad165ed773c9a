"""Forecasts of order 1-3: exact on polynomials of their degree in the reference executor and in
the step graphs, refused when a plan cannot support them, exported and replayed at the golden
gate, and version-1 plans still read."""

import copy
import json

import pytest
import torch
from conftest import TINY, make_tiny_model, run_cli, step_graph_sample

from lazydit.diffusion import initial_noise
from lazydit.executor import sample
from lazydit.files import write_json
from lazydit.gates import LazyGates, soft_trajectory
from lazydit.macs import module_macs, plan_macs, plan_record
from lazydit.model import MODULES
from lazydit.plans import Plan, PlanError
from lazydit.policies import PlanRequest, load_plan, make_plan


@pytest.fixture(scope="module")
def model():
    return make_tiny_model()


class _PolynomialInSteps(torch.nn.Module):
    """A branch whose output at step s is ``sum_i a_i (s / 4)^i``, i <= degree: a polynomial in
    the step index, whatever its input. The step is read from a clock the timestep embedder ticks
    once per denoising step (the executor and the step graphs both embed t once per step)."""

    def __init__(self, degree: int, tokens: int, hidden: int, clock: list[int]):
        super().__init__()
        gen = torch.Generator().manual_seed(11 + degree)
        self.coefs = [torch.randn(tokens, hidden, generator=gen) for _ in range(degree + 1)]
        self.clock = clock

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        s = (self.clock[0] - 1) / 4
        return sum(a * s**i for i, a in enumerate(self.coefs)).expand(h.shape[0], -1, -1)


def _with_polynomial(model, degree: int):
    """A copy of ``model`` whose block-0 attention is a degree-``degree`` polynomial in the step."""
    dit, clock = copy.deepcopy(model), [0]
    dit.t_embedder.register_forward_hook(lambda *_: clock.__setitem__(0, clock[0] + 1))
    dit.blocks[0].attn = _PolynomialInSteps(degree, dit.config.num_tokens, dit.config.hidden_size, clock)
    return dit


def _plan(order: int, cell_order: int | None = None) -> Plan:
    """Block 0's attention computes at steps 0..order (enough for the order), then at two more
    steps with uneven gaps; every other step forecasts it at ``cell_order`` (default ``order``;
    0 reuses it)."""
    computes = set(range(order + 1)) | {order + 2, order + 5}
    code = "RF23"[order if cell_order is None else cell_order]
    rows = [("C" if k in computes else code) + "C" for k in range(9)]
    return Plan(9, TINY.depth, [[row, "CC", "CC"] for row in rows])


@pytest.mark.parametrize("runner", ["executor", "step graphs"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_a_forecast_of_order_k_continues_a_degree_k_polynomial_exactly(model, runner, order):
    """Closed form: the forecasts are the polynomial's values, so the sample equals full compute;
    the same schedule forecast one order lower does not (the negative control)."""
    run = sample if runner == "executor" else step_graph_sample
    noise, labels = initial_noise(1, (1, 8, 8), 4), torch.tensor([3])
    full = run(_with_polynomial(model, order), noise, labels, Plan.full(9, TINY.depth), 1.5)
    exact = run(_with_polynomial(model, order), noise, labels, _plan(order), 1.5)
    lower = run(_with_polynomial(model, order), noise, labels, _plan(order, order - 1), 1.5)
    torch.testing.assert_close(exact, full, rtol=1e-5, atol=1e-5)
    assert (lower - full).abs().max() > 1e-3


def test_the_test_schedule_forecasts_at_the_asked_order_with_uneven_gaps():
    plan = _plan(3)
    assert [plan.action(k, 0, "attn") for k in range(9)] == list("CCCCFCFFC")
    assert {plan.order(k, 0, "attn") for k in (4, 6, 7)} == {3}


@pytest.mark.parametrize("order", [2, 3])
def test_order_k_plans_run_the_same_in_the_executor_and_thestep_graph_sample(model, order):
    plan = make_plan("random", model, PlanRequest(steps=10, ratio=0.5, seed=2, forecast=True, forecast_order=order))
    assert plan.max_order == order
    noise, labels = initial_noise(1, (1, 8, 8), 6), torch.tensor([5])
    torch.testing.assert_close(
        step_graph_sample(model, noise, labels, plan, 1.5),
        sample(model, noise, labels, plan, 1.5),
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "cells, message",
    [
        ([["CC"] * 3, ["CC"] * 3, ["2C", "CC", "CC"]], "step 2 block 0 attn: a forecast of order 2 needs 3 earlier"),
        ([["CC"] * 3, ["CC"] * 3, ["CC"] * 3, ["CC", "C3", "CC"]], "step 3 block 1 mlp: a forecast of order 3"),
        ([["CC"] * 3, ["CC"] * 3, ["CC", "CC", "RF"]], None),
        ([["CC"] * 3, ["CC", "CC", "4C"]], "step 1 block 2: cell '4C' asks for a forecast of order 4, outside 1-3"),
        ([["CC"] * 3, ["CC", "0C", "CC"]], "order 0, outside 1-3"),
        ([["CC"] * 3, ["FC", "CC", "CC"]], "step 1 block 0 attn: a forecast of order 1 needs 2 earlier computes"),
    ],
)
def test_plans_whose_forecasts_cannot_be_made_are_refused_naming_the_cell(cells, message):
    if message is None:  # the control: the same shape with enough computes is a plan
        assert Plan(len(cells), 3, cells).order(2, 2, "mlp") == 1
        return
    with pytest.raises(PlanError, match=message):
        Plan(len(cells), 3, cells)


def test_a_bad_forecast_order_is_refused_before_anything_runs(model, tiny_model_path, tmp_path):
    plan = Plan.from_skips(4, 3, {(2, 0, "attn")})
    for order in (0, 4, True):
        with pytest.raises(PlanError, match="outside 1-3"):
            plan.with_forecast(order)
    with pytest.raises(PlanError, match="needs --forecast"):
        make_plan("fora", model, PlanRequest(steps=4, forecast_order=2))
    out = tmp_path / "p.json"
    args = ["plan", "--model", str(tiny_model_path), "--policy", "fora", "--steps", "6", "--forecast"]
    proc = run_cli(*args, "--forecast-order", "4", "--out", str(out), check=False)
    assert proc.returncode == 2 and "outside 1-3" in proc.stderr and not out.exists()
    # a hand-written plan file with a cell it cannot forecast is refused by export, which leaves nothing
    data = plan_record(model.config, Plan.from_skips(4, 3, {(2, 0, "attn")}))
    data["cells"][2] = "2C CC CC"
    write_json(tmp_path / "bad.json", data)
    export = ["export", "--model", str(tiny_model_path), "--plan", str(tmp_path / "bad.json"), "--formats", "onnx"]
    proc = run_cli(*export, "--out", str(tmp_path / "bundle"), check=False)
    assert proc.returncode == 2 and "step 2 block 0 attn: a forecast of order 2 needs 3" in proc.stderr
    assert not (tmp_path / "bundle").exists()


def test_the_plan_command_writes_the_asked_order_and_defaults_to_order_one(tiny_model_path, tmp_path):
    base = ["plan", "--model", str(tiny_model_path), "--policy", "fora", "--interval", "4", "--steps", "9"]
    run_cli(*base, "--forecast", "--forecast-order", "3", "--out", str(tmp_path / "o3.json"))
    run_cli(*base, "--forecast", "--out", str(tmp_path / "o1.json"))
    o3, o1 = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("o3", "o1"))
    # FORA-4 computes at 0, 4, 8: steps 1-3 have one compute (reuse), 5-7 two (order 1), none has four
    assert o3["cells"][5].split()[0] == "FF" and o3["cells"][2].split()[0] == "RR"
    assert o3["params"] == {"interval": 4, "forecast": True, "forecast_order": 3}
    assert o1["cells"] == o3["cells"] and o1["params"] == {"interval": 4, "forecast": True}
    assert o3["version"] == o1["version"] == 2


def test_with_forecast_uses_the_highest_order_the_earlier_computes_allow():
    plan = Plan.from_skips(8, 1, {(k, 0, m) for k in (2, 4, 6, 7) for m in MODULES}).with_forecast(3)
    # computes at 0, 1, 3, 5: two before step 2, three before 4, four before 6 and 7
    assert [plan.order(k, 0, "attn") for k in (2, 4, 6, 7)] == [1, 2, 3, 3]
    assert Plan.from_skips(3, 1, {(1, 0, "mlp")}).with_forecast(2).action(1, 0, "mlp") == "R"


def test_forecast_macs_grow_with_the_order(model):
    skips = {(k, b, m) for k in (4, 6) for b in range(3) for m in MODULES}
    reuse = Plan.from_skips(8, 3, skips)
    per_cell = 2 * module_macs(model.config)["forecast"]  # class and null class rows
    for order in (1, 2, 3):
        forecast = plan_macs(model.config, reuse.with_forecast(order))["macs_per_image"]
        assert forecast - plan_macs(model.config, reuse)["macs_per_image"] == len(skips) * order * per_cell
    assert module_macs(model.config)["forecast"] == 2 * TINY.num_tokens * TINY.hidden_size


def _hard_router(plan: Plan) -> LazyGates:
    gates = LazyGates(plan.steps, TINY.depth, TINY.hidden_size, kind="router")
    with torch.no_grad():
        for k in range(1, plan.steps):
            for b in range(TINY.depth):
                for m in MODULES:
                    gates.logits[gates._index(k, b, m)] = 60.0 if plan.action(k, b, m) == "C" else -120.0
    return gates


@pytest.mark.parametrize("order", [2, 3])
def test_soft_forecast_of_order_k_with_hard_scores_is_the_forecasting_plan_executor(model, order):
    skips = {(k, 0, "attn") for k in (3, 5, 6)} | {(k, 1, "mlp") for k in (1, 4, 6, 7)} | {(7, 2, "attn")}
    plan = Plan.from_skips(8, TINY.depth, skips)
    noise, labels = initial_noise(2, (1, 8, 8), 4), torch.tensor([0, 6])
    with torch.no_grad():
        soft, _ = soft_trajectory(model, _hard_router(plan), noise, labels, 1.5, forecast=order)
        first, _ = soft_trajectory(model, _hard_router(plan), noise, labels, 1.5, forecast=1)
    expected = sample(model, noise, labels, plan.with_forecast(order), 1.5)
    torch.testing.assert_close(soft, expected, rtol=1e-5, atol=1e-5)
    assert (first - expected).abs().max() > 1e-4  # the order is in the loop, not ignored


@pytest.mark.parametrize("order", [2, 3])
def test_dynamic_forecast_of_order_k_matches_the_static_plan_when_decisions_agree(model, order):
    skips = {(k, b, m) for k in (3, 5, 6) for b in range(3) for m in MODULES if (k + b) % 2}
    plan = Plan.from_skips(7, TINY.depth, skips)
    noise, labels = initial_noise(2, (1, 8, 8), 8), torch.tensor([2, 9])

    def decider(k, b, m, h):
        return torch.full((h.shape[0] // 2,), plan.action(k, b, m) == "C")

    dynamic = sample(model, noise, labels, Plan.full(7, 3), 1.5, decider=decider, dynamic_forecast=order)
    static = sample(model, noise, labels, plan.with_forecast(order), 1.5)
    torch.testing.assert_close(dynamic, static, rtol=1e-5, atol=1e-6)
    first = sample(model, noise, labels, Plan.full(7, 3), 1.5, decider=decider, dynamic_forecast=1)
    assert (first - static).abs().max() > 1e-5


# A version-1 plan as lazydit wrote it before forecast orders existed.
VERSION_1_PLAN = {
    "format": "lazydit-plan",
    "version": 1,
    "policy": "fora",
    "params": {"interval": 2, "forecast": True},
    "sampler": {
        "name": "ddim",
        "steps": 5,
        "eta": 0.0,
        "clip_x0": True,
        "eps_after_clip": "recomputed",
        "guided_channels": None,
    },
    "model": {"depth": 3},
    "lazy_ratio": {"modules": 0.4},
    "skipped": 12,
    "cells": ["CC CC CC", "RR RR RR", "CC CC CC", "FF FF FF", "CC CC CC"],
}


def test_version_1_plan_files_still_load_with_their_forecasts_of_order_one(tmp_path, model):
    (tmp_path / "v1.json").write_text(json.dumps(VERSION_1_PLAN))
    plan = load_plan(tmp_path / "v1.json")
    assert plan.order(3, 1, "mlp") == 1 and plan.max_order == 1 and plan.action(1, 0, "attn") == "R"
    same = make_plan("fora", model, PlanRequest(steps=5, interval=2, forecast=True))
    assert plan.cells == same.cells
    plan.save(tmp_path / "v2.json")
    saved = json.loads((tmp_path / "v2.json").read_text())
    assert saved["version"] == 2 and saved["cells"] == VERSION_1_PLAN["cells"]
    # an order digit is version-2 syntax, and "1" is another spelling of "F"
    (tmp_path / "bad.json").write_text(
        json.dumps({**VERSION_1_PLAN, "cells": [*VERSION_1_PLAN["cells"][:3], "22 FF FF", "CC CC CC"]})
    )
    with pytest.raises(PlanError, match="version-1 plan forecasts to order 1 only"):
        load_plan(tmp_path / "bad.json")
    alias = {**VERSION_1_PLAN, "version": 2, "cells": [*VERSION_1_PLAN["cells"][:3], "11 1F F1", "CC CC CC"]}
    assert Plan.from_dict(alias).cells == plan.cells


# Forecasts of orders 1, 2 and 3 next to reuses, with computes at uneven gaps.
ORDER_PLAN_CELLS = [
    ["CC", "CC", "CC"],
    ["CC", "CC", "CC"],
    ["CC", "CC", "RC"],
    ["2C", "CF", "CC"],
    ["CC", "C2", "2C"],
    ["3R", "CC", "CC"],
    ["CC", "C3", "3F"],
    ["2C", "CR", "CC"],
]


@pytest.fixture(scope="module")
def order_bundle(tmp_path_factory, tiny_model, tiny_model_path):
    """A bundle of a plan with forecasts of every order, through the real CLI, every format,
    golden gate on (the export fails if a format does not replay)."""
    plan = Plan(len(ORDER_PLAN_CELLS), TINY.depth, ORDER_PLAN_CELLS, policy="random", params={"ratio": 0.3})
    root = tmp_path_factory.mktemp("orders")
    write_json(root / "plan.json", plan_record(tiny_model.config, plan))
    proc = run_cli(
        "export",
        "--model",
        str(tiny_model_path),
        "--plan",
        str(root / "plan.json"),
        "--formats",
        "onnx,executorch,coreml",
        "--label",
        "7",
        "--out",
        str(root / "bundle"),
    )
    assert "coreml: spec checked" in proc.stdout, proc.stdout
    return root / "bundle"


@pytest.mark.parametrize("backend", ["onnxruntime", "executorch"])
def test_a_plan_with_forecasts_of_order_two_and_three_replays_its_golden_vectors(order_bundle, backend):
    from lazydit.runtime.backends import create_backend
    from lazydit.runtime.bundle import Bundle
    from lazydit.runtime.loop import verify

    result = verify(create_backend(backend, Bundle.load(order_bundle)))
    assert result["passed"] and result["min_psnr_db"] >= 40, result


def test_the_bundle_carries_each_forecast_its_divided_differences_and_nothing_unread(order_bundle):
    """Every forecast of order k reads its module's table to order k; a value travels only if a
    later step reads it before it is written again, and every read finds a written value."""
    m = json.loads((order_bundle / "manifest.json").read_text())
    suffixes = ["", ".slope", ".d2", ".d3"]
    assert {s for s in m["slots"] if s.endswith((".d2", ".d3"))} >= {"cache:0.attn.d3", "cache:1.mlp.d3"}
    pending: dict[str, int] = {}  # slot -> step that wrote it, until a step reads it
    written: set[str] = set()
    for step in m["steps"]:
        k, method = step["index"], m["methods"][step["method"]]
        reads = {i["source"] for i in method["inputs"] if i["source"].startswith("cache:")}
        for b, row in enumerate(ORDER_PLAN_CELLS[k]):
            for code, module in zip(row, MODULES):
                order = "RF23".find(code) if code != "C" else -1
                if order >= 0:
                    want = {f"cache:{b}.{module}{suffixes[i]}" for i in range(max(order, 0) + 1)}
                    assert {r for r in reads if r.startswith(f"cache:{b}.{module}")} == want, (k, b, module)
        assert reads <= written, (k, reads - written)
        for r in reads:
            pending.pop(r, None)
        for o in method["outputs"]:
            if o["target"].startswith("cache:"):
                assert o["target"] not in pending, f"step {pending.get(o['target'])} wrote {o['target']}, never read"
                pending[o["target"]] = k
                written.add(o["target"])
    assert not pending, pending


def test_gate_training_and_dynamic_sampling_refuse_an_order_they_cannot_run():
    from lazydit.gates import GateError, GateTrainConfig
    from lazydit.samples import SamplingConfig

    assert GateTrainConfig(steps=5, forecast=True, forecast_order=3).forecast_order == 3  # the control
    for bad in ({"forecast_order": 2}, {"forecast": True, "forecast_order": 4}):
        with pytest.raises(GateError, match="--forecast-order"):
            GateTrainConfig(steps=5, **bad)
    assert SamplingConfig(dynamic_forecast=True, dynamic_forecast_order=2).forecast_order == 2
    assert SamplingConfig(dynamic_forecast_order=2).forecast_order == 0  # no --dynamic-forecast: reuse
    with pytest.raises(ValueError, match="outside 1-3"):
        SamplingConfig(dynamic_forecast=True, dynamic_forecast_order=4)

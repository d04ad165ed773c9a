import json

import pytest
import torch
from conftest import TINY, TINY_PLAN_CELLS, make_tiny_model, step_graph_sample
from torch.utils.flop_counter import FlopCounterMode

from lazydit.diffusion import PIXEL_SAMPLER, DDIMSchedule, guide, initial_noise
from lazydit.executor import sample
from lazydit.files import write_json
from lazydit.gates import LazyGates
from lazydit.macs import plan_macs, plan_record
from lazydit.plans import Plan, PlanError
from lazydit.policies import PlanRequest, load_plan, make_plan, skip_count


@pytest.fixture(scope="module")
def model():
    return make_tiny_model()


def plain_ddim(model, noise, labels, steps, cfg):
    """DDIM written directly on model.forward, independent of the plan executor."""
    sched = DDIMSchedule(steps)
    x = noise.clone()
    null = torch.full_like(labels, model.config.num_classes)
    with torch.no_grad():
        for k in range(steps):
            s = sched.scalars(k)
            t = torch.full((2 * len(labels),), s["t"])
            eps = model.eps(model(torch.cat([x, x]), t, torch.cat([labels, null])))
            x = PIXEL_SAMPLER.update(x, guide(eps[: len(labels)], eps[len(labels) :], cfg), s["alpha"], s["alpha_prev"])
    return x


def test_plan_without_skips_reproduces_plain_ddim_exactly(model):
    noise, labels = initial_noise(4, (1, 8, 8), 0), torch.tensor([0, 3, 7, 9])
    out = sample(model, noise, labels, Plan.full(7, TINY.depth), 1.5)
    torch.testing.assert_close(out, plain_ddim(model, noise, labels, 7, 1.5), rtol=0, atol=0)


def test_zero_initialised_gates_score_one_half():
    gates = LazyGates(5, 3, 32)
    h = torch.randn(6, 16, 32)
    assert torch.equal(gates.score(2, 1, "mlp", h), torch.full((6,), 0.5))
    router = LazyGates(5, 3, 32, kind="router")
    assert torch.equal(router.score(4, 0, "attn", h), torch.full((6,), 0.5))


def test_static_plan_reproduces_dynamic_gating_when_decisions_agree(model):
    plan = Plan(len(TINY_PLAN_CELLS), TINY.depth, [r[:] for r in TINY_PLAN_CELLS])
    plan_reuse = Plan.from_skips(plan.steps, plan.depth, set(plan.skipped_cells()))
    noise, labels = initial_noise(3, (1, 8, 8), 5), torch.tensor([1, 2, 3])
    static = sample(model, noise, labels, plan_reuse, 1.5)

    def decider(k, b, m, h):
        return torch.full((h.shape[0] // 2,), plan.action(k, b, m) == "C")

    dynamic = sample(model, noise, labels, Plan.full(plan.steps, plan.depth), 1.5, decider=decider)
    torch.testing.assert_close(dynamic, static, rtol=0, atol=0)
    # with forecasting on both sides as well
    forecast = plan_reuse.with_forecast()
    dyn_f = sample(model, noise, labels, Plan.full(plan.steps, plan.depth), 1.5, decider=decider, dynamic_forecast=True)
    torch.testing.assert_close(dyn_f, sample(model, noise, labels, forecast, 1.5), rtol=1e-6, atol=1e-6)


def test_dynamic_gating_with_mixed_decisions_matches_per_sample_static_plans(model):
    noise, labels = initial_noise(2, (1, 8, 8), 9), torch.tensor([4, 5])
    plans = [Plan.full(4, 3), Plan.from_skips(4, 3, {(1, 0, "mlp"), (2, 2, "attn"), (3, 1, "mlp")})]

    def decider(k, b, m, h):
        return torch.tensor([plans[i].action(k, b, m) == "C" for i in range(2)])

    mixed = sample(model, noise, labels, Plan.full(4, 3), 1.5, decider=decider)
    for i, plan in enumerate(plans):
        alone = sample(model, noise[i : i + 1], labels[i : i + 1], plan, 1.5)
        torch.testing.assert_close(mixed[i : i + 1], alone, rtol=1e-4, atol=2e-5)


class _LinearInSteps(torch.nn.Module):
    """A branch whose output is ``v0 + n * d`` on its n-th call: with one call per step it is a
    degree-1 polynomial in the step index, which a first-order forecast continues exactly."""

    def __init__(self, tokens: int, hidden: int):
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.v0, self.d = torch.randn(tokens, hidden, generator=gen), torch.randn(tokens, hidden, generator=gen)
        self.calls = 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (self.v0 + (self.calls - 1) * self.d).expand(h.shape[0], -1, -1)


@pytest.mark.parametrize("runner", ["executor", "step graphs"])
def test_a_forecast_continues_a_branch_that_is_linear_in_the_step_index_exactly(model, runner):
    """Block 0's attention computes at steps 0 and 1 and is forecast at 2 and 3: closed form, the
    forecast is its value at those steps, so the sample equals full compute (and reuse does not)."""
    import copy

    run = sample if runner == "executor" else step_graph_sample
    noise, labels = initial_noise(1, (1, 8, 8), 4), torch.tensor([3])
    rest = ["CC", "CC"]
    results = {}
    for name, cells in {
        "full": [["CC", *rest]] * 4,
        "forecast": [["CC", *rest], ["CC", *rest], ["FC", *rest], ["FC", *rest]],
        "reuse": [["CC", *rest], ["CC", *rest], ["RC", *rest], ["RC", *rest]],
    }.items():
        dit = copy.deepcopy(model)
        dit.blocks[0].attn = _LinearInSteps(dit.config.num_tokens, dit.config.hidden_size)
        results[name] = run(dit, noise, labels, Plan(4, 3, cells), 1.5)
    torch.testing.assert_close(results["forecast"], results["full"], rtol=1e-5, atol=1e-5)
    assert (results["reuse"] - results["full"]).abs().max() > 1e-3


def test_a_forecast_needs_two_earlier_computes(model):
    with pytest.raises(PlanError, match="order 1 needs 2 earlier computes"):
        Plan(3, 3, [["CC"] * 3, ["FC", "CC", "CC"], ["CC"] * 3])


def test_plan_json_round_trips(tmp_path, model):
    plan = Plan(len(TINY_PLAN_CELLS), TINY.depth, TINY_PLAN_CELLS, policy="random", params={"ratio": 0.4})
    write_json(tmp_path / "p.json", plan_record(model.config, plan))
    loaded = load_plan(tmp_path / "p.json")
    assert loaded.cells == plan.cells and loaded.policy == "random" and loaded.params == {"ratio": 0.4}
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["lazy_ratio"]["modules"] == pytest.approx(plan.lazy_ratio)
    assert 0 < data["lazy_ratio"]["macs"] < 1 and data["macs_per_image"] < data["macs_per_image_full"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(cells=d["cells"][:-1]), "lists 5 steps"),
        (lambda d: d["model"].update(depth=4), "lists 3 blocks"),
        (lambda d: d.update(cells=["RC CC CC"] + d["cells"][1:]), "step 0 cannot skip"),
        (lambda d: d.update(policy="magic"), "unknown policy"),
        (lambda d: d.update(cells=["CC CC CC"] + ["CX CC CC"] + d["cells"][2:]), "bad cell"),
        (lambda d: d.update(format="other"), "not a lazydit plan"),
    ],
)
def test_bad_plan_files_fail_with_clear_errors(tmp_path, model, mutate, message):
    plan = Plan(len(TINY_PLAN_CELLS), TINY.depth, TINY_PLAN_CELLS, policy="random")
    data = plan.to_dict()
    mutate(data)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(PlanError, match=message):
        load_plan(tmp_path / "bad.json")


def test_plan_for_another_model_or_step_count_is_refused(model):
    plan = Plan.full(5, 4)
    with pytest.raises(PlanError, match="4-block model"):
        plan.check_model(model.config)
    with pytest.raises(PlanError, match="DDIM 5 steps"):
        Plan.full(5, 3).check_model(model.config, steps=10)


def test_analytic_macs_match_executed_matmuls(model):
    plan = Plan(len(TINY_PLAN_CELLS), TINY.depth, [[c.replace("F", "R") for c in row] for row in TINY_PLAN_CELLS])
    noise, labels = initial_noise(1, (1, 8, 8), 0), torch.tensor([2])
    with FlopCounterMode(display=False) as counter:
        sample(model, noise, labels, plan, 1.5)
    assert counter.get_total_flops() // 2 == plan_macs(model.config, plan)["macs_per_image"]


def test_policies_hit_the_requested_ratio_exactly(model):
    plan = make_plan("random", model, PlanRequest(steps=10, ratio=0.3))
    assert len(plan.skipped_cells()) == skip_count(10, 3, 0.3) == 18
    assert all(k > 0 for k, _, _ in plan.skipped_cells())
    fora = make_plan("fora", model, PlanRequest(steps=6, interval=3))
    assert [any(c != "CC" for c in row) for row in fora.cells] == [False, True, True, False, True, True]
    with pytest.raises(PlanError, match="out of range"):
        make_plan("random", model, PlanRequest(steps=4, ratio=0.9))
    with pytest.raises(PlanError, match="unknown policy"):
        make_plan("nope", model, PlanRequest(steps=4))


def test_same_seed_draws_the_same_noise_whatever_the_batch():
    a = initial_noise(5, (1, 8, 8), 3)
    b = initial_noise(2, (1, 8, 8), 3)
    assert torch.equal(a[:2], b) and not torch.equal(a, initial_noise(5, (1, 8, 8), 4))

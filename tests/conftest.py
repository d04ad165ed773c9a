import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lazydit.checkpoints import save_model
from lazydit.files import write_json
from lazydit.macs import plan_record
from lazydit.model import DiT, DiTConfig
from lazydit.plans import Plan

TINY = DiTConfig(
    input_size=8,
    patch_size=2,
    in_channels=1,
    hidden_size=32,
    depth=3,
    num_heads=2,
    num_classes=10,
    learn_sigma=False,
    name="tiny",
)

# Every kind of cell: reuse, forecast (with its slope), recompute, and a step identical to an
# earlier one so methods are shared.
TINY_PLAN_CELLS = [
    ["CC", "CC", "CC"],
    ["RC", "CR", "RR"],
    ["CC", "RC", "CC"],
    ["FR", "CF", "FF"],
    ["CC", "CC", "CC"],
    ["RC", "CR", "RR"],
]


def make_tiny_model(seed: int = 0, config: DiTConfig = TINY) -> DiT:
    """A DiT with random non-zero weights (a fresh DiT zeroes its output layers)."""
    torch.manual_seed(seed)
    model = DiT(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
    return model.eval()


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lazydit.cli", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"lazydit {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_model() -> DiT:
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, tiny_model) -> Path:
    return save_model(tiny_model, tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def tiny_plan_path(tmp_path_factory, tiny_model) -> Path:
    plan = Plan(len(TINY_PLAN_CELLS), TINY.depth, TINY_PLAN_CELLS, policy="random", params={"ratio": 0.4})
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    write_json(path, plan_record(tiny_model.config, plan))
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_model_path, tiny_plan_path) -> Path:
    """A tiny lazy bundle exported through the real CLI (ONNX + ExecuTorch, gate on)."""
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    run_cli(
        "export",
        "--model",
        str(tiny_model_path),
        "--plan",
        str(tiny_plan_path),
        "--formats",
        "onnx,executorch",
        "--label",
        "3",
        "--out",
        str(out),
    )
    assert json.loads((out / "manifest.json").read_text())["format"] == "lazydit-bundle"
    return out


def step_graph_sample(model, noise, labels, plan, cfg_scale):
    """The exported step graphs run eagerly over the plan, slot by slot, as a runtime would."""
    from lazydit.diffusion import DDIMSchedule
    from lazydit.export.bundle import graph_modules
    from lazydit.export.graphs import MethodTable

    table = MethodTable.of(plan)
    graphs, schedule = graph_modules(model, plan, table), DDIMSchedule(plan.steps)
    state = {"x": noise, "y": labels, "cfg_scale": torch.tensor([cfg_scale])}
    with torch.no_grad():
        for k, (spec, name) in enumerate(zip(table.specs, table.step_methods)):
            scalars = schedule.scalars(k)
            feed = [state.get(src, torch.tensor([scalars.get(src, 0.0)])) for _, src in spec.inputs()]
            for (_, target), value in zip(spec.outputs(), graphs[name](*feed)):
                state[target] = value
    return state["x"]

"""The manifest-driven sampling loop. It routes tensors between slots and does no math."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .backends import Backend
from .bundle import BundleError

# The floor every runtime must reach replaying a bundle's golden vectors (PSNR of the sample
# after each step and of the final image); the exporter's gate refuses a bundle under it.
PARITY_DB = 40.0


@dataclass
class RunResult:
    image: np.ndarray
    state: dict[str, np.ndarray]
    step_seconds: list[float] = field(default_factory=list)  # time inside the backend, per step
    decode_seconds: float = 0.0
    total_seconds: float = 0.0


def scalar(value: float) -> np.ndarray:
    return np.array([value], dtype=np.float32)


def _store(state: dict, slots: dict, method: str, outputs: list[dict], values: list[np.ndarray]) -> None:
    """Check each output against its slot's dtype and shape (as the Java and Swift loops do), then
    store it: a backend that returns the wrong thing fails here, not three steps later."""
    if len(values) != len(outputs):
        raise BundleError(f"method {method} returned {len(values)} outputs, the manifest lists {len(outputs)}")
    for out, value in zip(outputs, values):
        slot = slots[out["target"]]
        value = np.asarray(value)
        if value.dtype != np.dtype(slot["dtype"]) or list(value.shape) != slot["shape"]:
            raise BundleError(
                f"method {method} output {out['name']} is {value.dtype}{list(value.shape)}, slot {out['target']} "
                f"holds {slot['dtype']}{slot['shape']}; the backend must return the manifest's dtypes and shapes"
            )
        state[out["target"]] = value


def run_bundle(
    backend: Backend,
    initial: dict[str, np.ndarray],
    on_step: Callable[[int, list[np.ndarray], list[np.ndarray]], None] | None = None,
) -> RunResult:
    """Run every step, then decode. ``on_step(i, inputs, outputs)`` sees what each step was fed."""
    manifest = backend.bundle.manifest
    methods, slots = manifest["methods"], manifest["slots"]
    state = dict(initial)
    scalars = [{k: scalar(v) for k, v in step["scalars"].items()} for step in manifest["steps"]]
    step_seconds = []
    start = time.perf_counter()
    for i, step in enumerate(manifest["steps"]):
        method = methods[step["method"]]
        feed = [state[s] if s in state else scalars[i][s] for s in (inp["source"] for inp in method["inputs"])]
        t0 = time.perf_counter()
        outs = backend.run(step["method"], feed)
        step_seconds.append(time.perf_counter() - t0)
        _store(state, slots, step["method"], method["outputs"], outs)
        if on_step is not None:
            on_step(i, feed, outs)
    decode = methods[manifest["decode"]]
    t0 = time.perf_counter()
    outs = backend.run(manifest["decode"], [state[inp["source"]] for inp in decode["inputs"]])
    decode_seconds = time.perf_counter() - t0
    _store(state, slots, manifest["decode"], decode["outputs"], outs)
    image = state[decode["outputs"][0]["target"]]
    return RunResult(image, state, step_seconds, decode_seconds, time.perf_counter() - start)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def parity_floor(manifest: dict) -> float:
    """The bundle's golden floor: PARITY_DB for fp32, a measured lower one for fp16 and int8
    bundles (whose golden vectors are the eager fp32 run)."""
    return float(manifest["golden"].get("floor_db", PARITY_DB))


def verify(backend: Backend, golden: dict[str, np.ndarray] | None = None) -> dict:
    """Replay the golden vectors; PSNR of x after every step (range 2: samples live in [-1, 1])
    and of the final image (range 255), against the bundle's floor."""
    bundle = backend.bundle
    golden = golden if golden is not None else bundle.golden()
    x_name = {
        m: next(o["name"] for o in meth["outputs"] if o["target"] == "x")
        for m, meth in bundle.methods.items()
        if m != bundle.manifest["decode"]
    }
    per_step = []

    def check(i, _feed, outs):
        method = bundle.steps[i]["method"]
        names = [o["name"] for o in bundle.methods[method]["outputs"]]
        per_step.append(psnr(outs[names.index(x_name[method])], golden[f"step/{i}/out/{x_name[method]}"], 2.0))

    result = run_bundle(backend, bundle.initial_state(golden), on_step=check)
    decode = bundle.manifest["decode"]
    image_db = psnr(result.image, golden[f"decode/out/{bundle.methods[decode]['outputs'][0]['name']}"], 255.0)
    worst = min(per_step + [image_db])
    return {
        "backend": backend.name,
        "per_step_psnr_db": per_step,
        "image_psnr_db": image_db,
        "min_psnr_db": worst,
        "floor_db": parity_floor(bundle.manifest),
        "passed": bool(worst >= parity_floor(bundle.manifest)),
    }

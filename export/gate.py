"""The correctness gate: a bundle is accepted only if every runnable format replays its golden
vectors at the bundle's parity floor; Core ML is checked structurally off macOS."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from lazydit.runtime.backends import create_backend
from lazydit.runtime.bundle import Bundle
from lazydit.runtime.loop import verify

from .formats import ExportError

RUNNABLE = {"onnx": "onnxruntime", "executorch": "executorch"}


def correctness_gate(root: Path, formats: tuple[str, ...], say=print) -> dict:
    """Every runnable format must replay the golden vectors at the bundle's floor on every step and the
    image; Core ML is checked structurally here (prediction needs macOS)."""
    bundle = Bundle.load(root)
    report = {}
    for fmt in formats:
        if fmt == "coreml":
            report[fmt] = check_coreml_spec(bundle)
            if sys.platform != "darwin":
                continue
            backend_name = "coreml"
        else:
            backend_name = RUNNABLE[fmt]
        say(f"checking {fmt} against the eager reference")
        result = verify(create_backend(backend_name, bundle))
        report[fmt] = {**report.get(fmt, {}), **result}
        if not result["passed"]:
            worst = int(np.argmin(result["per_step_psnr_db"]))
            raise ExportError(
                f"{fmt} output differs from the eager reference: {result['min_psnr_db']:.1f} dB "
                f"(worst step {worst}), under the {result['floor_db']:.0f} dB gate"
            )
    return report


def check_coreml_spec(bundle: Bundle) -> dict:
    """Functions, input and output names and shapes of the .mlpackage against the manifest."""
    import coremltools as ct

    path = bundle.root / "model.mlpackage"
    spec = ct.utils.load_spec(str(path))
    functions = {f.name: f for f in spec.description.functions}
    art = bundle.artifact("coreml")
    for method, fn in art["methods"].items():
        if fn not in functions:
            raise ExportError(f"Core ML package lacks function {fn} for method {method}")
        desc = functions[fn]
        want_in = [i["name"] for i in bundle.methods[method]["inputs"]]
        want_out = [o["name"] for o in bundle.methods[method]["outputs"]]
        have_in = [i.name for i in desc.input]
        have_out = [o.name for o in desc.output]
        if have_in != want_in or have_out != want_out:
            raise ExportError(
                f"Core ML function {fn}: I/O {have_in} -> {have_out} does not match the manifest "
                f"{want_in} -> {want_out}"
            )
        for i in desc.input:
            shape = list(i.type.multiArrayType.shape)
            source = next(x["source"] for x in bundle.methods[method]["inputs"] if x["name"] == i.name)
            want = bundle.manifest["slots"][source]["shape"] if source in bundle.manifest["slots"] else [1]
            if shape != want:
                raise ExportError(f"Core ML function {fn}: input {i.name} has shape {shape}, the manifest {want}")
    return {"functions": len(functions), "spec_checked": True}

"""Artifact writers, one per format, registered by name. Each takes the unique graphs of a
bundle and writes its artifact(s) into the bundle folder, storing shared weights once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lazydit.runtime.bundle import sha256
from torch import nn

FORMATS: dict[str, Callable[[ExportJob, Path], dict]] = {}


def register_format(name: str):
    def wrap(fn):
        FORMATS[name] = fn
        return fn

    return wrap


@dataclass
class GraphJob:
    name: str
    module: nn.Module
    example: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]


@dataclass
class ExportJob:
    graphs: list[GraphJob]
    metadata: dict[str, str]  # stamped into every artifact that has a place for it
    progress: Callable[[str], None] = lambda msg: None
    programs: dict[str, torch.export.ExportedProgram] = field(default_factory=dict)

    def program(self, g: GraphJob) -> torch.export.ExportedProgram:
        """The graph traced once by torch.export; every writer in this process starts from it
        (each one decomposes a copy, the traced program itself is never changed)."""
        if g.name not in self.programs:
            self.programs[g.name] = _export_program(g)
        return self.programs[g.name]


def _export_program(g: GraphJob) -> torch.export.ExportedProgram:
    with torch.no_grad():
        return torch.export.export(g.module.eval(), g.example, strict=False)


# --- ONNX -------------------------------------------------------------------------------------
ONNX_INLINE_LIMIT = 1024  # bytes; smaller constants stay inline (onnxruntime's shape inference reads them)


@register_format("onnx")
def write_onnx(job: ExportJob, out: Path) -> dict:
    """One graph per method; every large initializer lives once in ``onnx/weights.bin``."""
    import onnx
    from onnx import numpy_helper

    folder = out / "onnx"
    folder.mkdir()
    models = {}
    for g in job.graphs:
        job.progress(f"onnx {g.name}")
        program = torch.onnx.export(job.program(g), g.example, dynamo=True, input_names=g.input_names,
                                    output_names=g.output_names, optimize=True, verbose=False)
        models[g.name] = program.model_proto
    offsets: dict[str, tuple[int, int]] = {}
    with open(folder / "weights.bin", "wb") as blob:
        for name, proto in models.items():
            for tensor in proto.graph.initializer:
                raw = numpy_helper.to_array(tensor).tobytes()
                if len(raw) < ONNX_INLINE_LIMIT:
                    continue
                digest = hashlib.sha256(raw).hexdigest()
                if digest not in offsets:
                    pad = (-blob.tell()) % 64
                    blob.write(b"\0" * pad)
                    offsets[digest] = (blob.tell(), len(raw))
                    blob.write(raw)
                offset, length = offsets[digest]
                tensor.ClearField("raw_data")
                tensor.ClearField("float_data")
                tensor.ClearField("int64_data")
                tensor.ClearField("int32_data")
                tensor.data_location = onnx.TensorProto.EXTERNAL
                del tensor.external_data[:]
                for key, value in (("location", "weights.bin"), ("offset", str(offset)), ("length", str(length))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, value
    files, methods = [], {}
    for name, proto in models.items():
        del proto.metadata_props[:]
        for key, value in job.metadata.items():
            prop = proto.metadata_props.add()
            prop.key, prop.value = key, value
        path = folder / f"{name}.onnx"
        onnx.save_model(proto, path)
        methods[name] = f"onnx/{name}.onnx"
        files.append(path)
    files.append(folder / "weights.bin")
    return {"methods": methods, "files": [_file_entry(out, p) for p in files]}


# --- ExecuTorch -------------------------------------------------------------------------------
@register_format("executorch")
def write_executorch(job: ExportJob, out: Path) -> dict:
    """One .pte holding every method, lowered to XNNPACK; shared weights are stored once."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    programs = {}
    for g in job.graphs:
        job.progress(f"executorch export {g.name}")
        programs[g.name] = _export_program(g)  # lowering changes the programs it is given
    job.progress(f"executorch lowering {len(programs)} methods to XNNPACK")
    # The edge-dialect IR check re-walks every graph after each stage; the golden-vector gate
    # checks what matters (the lowered program's outputs), so the IR check is not repeated here.
    config = EdgeCompileConfig(_check_ir_validity=False)
    edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()], compile_config=config)
    program = edge.to_executorch()
    path = out / "model.pte"
    with open(path, "wb") as f:
        program.write_to_file(f)
    return {"methods": {g.name: g.name for g in job.graphs}, "files": [_file_entry(out, path)]}


# --- Core ML ----------------------------------------------------------------------------------
@register_format("coreml")
def write_coreml(job: ExportJob, out: Path) -> dict:
    """One multifunction .mlpackage (iOS 18, fp16 compute); save_multifunction dedups weights."""
    import shutil
    import tempfile

    import coremltools as ct

    tmp = Path(tempfile.mkdtemp(prefix="coreml-", dir=out))
    try:
        desc = None
        for g in job.graphs:
            job.progress(f"coreml {g.name}")
            program = _strip_aliases(job.program(g).run_decompositions({}))
            mlmodel = ct.convert(
                program, minimum_deployment_target=ct.target.iOS18, compute_precision=ct.precision.FLOAT16,
                inputs=[ct.TensorType(name=n, shape=tuple(t.shape), dtype=_ct_dtype(t)) for n, t in
                        zip(g.input_names, g.example)],
                outputs=[ct.TensorType(name=n) for n in g.output_names],
                skip_model_load=True,
            )
            part = tmp / f"{g.name}.mlpackage"
            mlmodel.save(str(part))
            if desc is None:
                desc = ct.utils.MultiFunctionDescriptor()
                desc.default_function_name = g.name
            desc.add_function(str(part), src_function_name="main", target_function_name=g.name)
        path = out / "model.mlpackage"
        unstamped = tmp / "merged.mlpackage"
        ct.utils.save_multifunction(desc, str(unstamped))
        merged = ct.models.MLModel(str(unstamped), skip_model_load=True, function_name=job.graphs[0].name)
        merged.author = job.metadata.get("author", "")
        merged.license = job.metadata.get("license", "")
        merged.version = job.metadata.get("version", "")
        merged.short_description = job.metadata.get("description", "")
        merged.user_defined_metadata.update({k: v for k, v in job.metadata.items()})
        merged.save(str(path))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {"methods": {g.name: g.name for g in job.graphs}, "files": [_file_entry(out, p) for p in files]}


def _strip_aliases(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """torch.export marks a tensor that is both used and returned with aten.alias, which the Core ML
    converter does not know; an alias computes nothing, so wire its users to its input."""
    graph = program.graph_module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target == torch.ops.aten.alias.default:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    program.graph_module.recompile()
    return program


def _ct_dtype(t: torch.Tensor):
    import numpy as np

    return np.int32 if t.dtype in (torch.int64, torch.int32) else np.float32


def _file_entry(root: Path, path: Path) -> dict:
    return {"path": str(path.relative_to(root)), "sha256": sha256(path), "bytes": path.stat().st_size}


def metadata_json(data: dict) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))

"""Artifact writers, one per format, registered by name. Each takes the unique graphs of a
bundle and writes its artifact(s) into the bundle folder, storing shared weights once."""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lazydit.pipelines import LatentDecoder
from lazydit.registry import Registry
from lazydit.runtime.bundle import sha256

from .graphs import StepGraph
from .vae import XNNPACK_DECOMPOSITIONS


class ExportError(RuntimeError):
    """An export that cannot be completed or whose result fails a check; nothing is left behind."""


FORMATS: Registry[Callable[[ExportJob, Path], dict]] = Registry("format", ExportError)
register_format = FORMATS.register


@dataclass
class GraphJob:
    name: str
    module: nn.Module
    example: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    output_dtypes: list[str] = field(default_factory=list)  # numpy names, as the manifest's slots


@dataclass
class ExportJob:
    graphs: list[GraphJob]
    metadata: dict[str, str]  # stamped into every artifact that has a place for it
    progress: Callable[[str], None] = lambda msg: None
    programs: dict[str, torch.export.ExportedProgram] = field(default_factory=dict)

    @property
    def precision(self) -> str:
        """The bundle's precision (``export/precision.py``), stamped into the metadata."""
        return self.metadata.get("precision", "fp32")

    @property
    def separate_weights(self) -> bool:
        """ExecuTorch: the delegates' weights in ``model.ptd`` beside the program."""
        return self.metadata.get("executorch_weights") == "model.ptd"

    def program(self, g: GraphJob) -> torch.export.ExportedProgram:
        """The graph traced once by torch.export; every writer in this process starts from it
        (each one decomposes a copy, the traced program itself is never changed)."""
        if g.name not in self.programs:
            self.programs[g.name] = _export_program(g.module, g.example)
        return self.programs[g.name]


def _export_program(module: nn.Module, example: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    with torch.no_grad():
        return torch.export.export(module.eval(), example, strict=False)


# --- ONNX -------------------------------------------------------------------------------------
ONNX_INLINE_LIMIT = 1024  # bytes; smaller constants stay inline (onnxruntime's shape inference reads them)


@register_format("onnx")
def write_onnx(job: ExportJob, out: Path) -> dict:
    """One graph per method; every large initializer lives once in ``onnx/weights.bin``."""
    return save_onnx(onnx_models(job, [g.name for g in job.graphs], out), job.metadata, out)


PARTS = ".onnx-weights"  # in the bundle being written: each large tensor once, named by its hash


def onnx_models(job: ExportJob, names: list[str], out: Path) -> dict:
    """The ONNX graphs of the named methods, converted but not yet written (methods are
    independent, so two processes can each convert a share). Each graph's large tensors go to
    ``out/.onnx-weights/<sha256>`` as soon as it is converted, so that memory holds one graph's
    weights at a time (a DiT-XL/2 step graph carries 2.7 GB); the graphs keep references."""
    models = {}
    for g in job.graphs:
        if g.name in names:
            job.progress(f"onnx {g.name}")
            program = torch.onnx.export(
                job.program(g),
                g.example,
                dynamo=True,
                input_names=g.input_names,
                output_names=g.output_names,
                optimize=False,
                verbose=False,
            )
            model = _lean_onnx(program.model)
            del program
            job.programs.pop(g.name, None)  # ONNX is the last format to read a trace: free it
            if job.precision == "fp16":
                model = _fp16_weights(model)
            elif job.precision == "int8":
                with tempfile.TemporaryDirectory(prefix="lazydit-int8-") as tmp:
                    src = _float_for_quantizer(model, Path(tmp))
                    del model  # the saved file is the only float copy the quantizer needs
                    gc.collect()
                    model = _int8_weights(src)
            models[g.name] = _weights_to_parts(model, out / PARTS)
            del model
            gc.collect()  # the exporter's graphs are cyclic: free each one's weights now, not later
    return models


def _weights_to_parts(model, parts: Path):
    """Every initializer of 1 KiB and up moved to ``parts/<sha256>`` (written once, atomically:
    two processes may store the same tensor) and replaced by a reference to that file."""
    import os

    import onnx
    from onnx import numpy_helper

    parts.mkdir(exist_ok=True)
    for tensor in model.graph.initializer:
        raw = numpy_helper.to_array(tensor).tobytes()
        if len(raw) < ONNX_INLINE_LIMIT:
            continue
        digest = hashlib.sha256(raw).hexdigest()
        path = parts / digest
        if not path.exists():
            tmp = parts / f".{digest}.{os.getpid()}"
            tmp.write_bytes(raw)
            os.replace(tmp, path)
        for field_name in ("raw_data", "float_data", "int64_data", "int32_data"):
            tensor.ClearField(field_name)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        del tensor.external_data[:]
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", digest
        entry = tensor.external_data.add()
        entry.key, entry.value = "length", str(len(raw))
    # protobuf keeps a cleared field's bytes in the message's arena until the whole message goes:
    # a fresh copy of the stripped graph holds none of them
    lean = onnx.ModelProto()
    lean.ParseFromString(model.SerializeToString())
    return lean


def _fp16_weights(model):
    """Every large float initializer stored in fp16, widened by a Cast at the graph's start.
    onnxruntime's CPU kernels compute in fp32, so the file halves and the arithmetic is fp32 on
    fp16-rounded weights (the runtime keeps the casts unfolded: sessions then share the fp16
    tensors instead of each holding a widened copy)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    casts = []
    for tensor in graph.initializer:
        if tensor.data_type != onnx.TensorProto.FLOAT:
            continue
        value = numpy_helper.to_array(tensor)
        if value.nbytes < ONNX_INLINE_LIMIT:
            continue
        name = tensor.name
        tensor.CopyFrom(numpy_helper.from_array(value.astype(np.float16), f"{name}__fp16"))
        casts.append(helper.make_node("Cast", [f"{name}__fp16"], [name], to=onnx.TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


@contextlib.contextmanager
def _logging_level(level: int):
    root = logging.getLogger()
    before = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(before)


def _float_for_quantizer(model, folder: Path) -> Path:
    """The float graph saved for onnxruntime's quantizer, which reads a file. Its weights go to
    an external data file: past 2 GB (a DiT-XL/2 step graph) protobuf cannot serialise them
    inline, nor even measure the message."""
    import onnx

    del model.graph.value_info[:]  # the quantizer infers shapes afresh (stale entries make it fail)
    src = folder / "float.onnx"
    onnx.save_model(model, src, save_as_external_data=True, location="float.onnx.data")
    return src


def _int8_weights(src: Path):
    """onnxruntime's dynamic quantization: per-channel int8 weights of every MatMul/Gemm (7-bit
    range), activations quantized per call (DynamicQuantizeLinear + MatMulInteger)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = src.with_name("int8.onnx")
    # its advice to pre-process (shape inference, fusions) is logged once per graph at WARNING
    with _logging_level(logging.ERROR):
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=True,
            reduce_range=True,  # 7-bit weights: x86's u8 x s8 dot products saturate at 8 bits (12 dB without)
            weight_type=QuantType.QInt8,
            use_external_data_format=True,
        )
    return onnx.load_model(dst)


def save_onnx(models: dict, metadata: dict[str, str], out: Path) -> dict:
    """Write ``onnx/<method>.onnx`` with every large initializer stored once in ``onnx/weights.bin``,
    and ``onnx/weights.json``, which names each method's initializers with their place in it (so
    a runtime can hand every session the same tensors instead of letting each load its own).
    The tensors come from ``out/.onnx-weights`` (``onnx_models``), which is removed after."""
    import shutil

    import onnx
    from onnx import helper

    folder = out / "onnx"
    folder.mkdir()
    parts = out / PARTS
    offsets: dict[str, tuple[int, int]] = {}
    table: dict[str, list] = {}
    with open(folder / "weights.bin", "wb") as blob:
        for name, proto in models.items():
            table[name] = []
            for tensor in proto.graph.initializer:
                if tensor.data_location != onnx.TensorProto.EXTERNAL:
                    continue
                ref = {e.key: e.value for e in tensor.external_data}
                digest = ref["location"]
                if digest not in offsets:
                    pad = (-blob.tell()) % 64
                    blob.write(b"\0" * pad)
                    offsets[digest] = (blob.tell(), int(ref["length"]))
                    with open(parts / digest, "rb") as src:
                        shutil.copyfileobj(src, blob, 16 << 20)
                offset, length = offsets[digest]
                dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type).name
                table[name].append([tensor.name, offset, length, dtype, list(tensor.dims)])
                del tensor.external_data[:]
                for key, value in (("location", "weights.bin"), ("offset", str(offset)), ("length", str(length))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, value
    shutil.rmtree(parts, ignore_errors=True)
    files, methods = [], {}
    for name, proto in models.items():
        del proto.metadata_props[:]
        for key, value in metadata.items():
            prop = proto.metadata_props.add()
            prop.key, prop.value = key, value
        path = folder / f"{name}.onnx"
        onnx.save_model(proto, path)
        methods[name] = f"onnx/{name}.onnx"
        files.append(path)
    files.append(folder / "weights.bin")
    (folder / "weights.json").write_text(json.dumps({"file": "weights.bin", "methods": table}, indent=1) + "\n")
    files.append(folder / "weights.json")
    return {"methods": methods, "files": [_file_entry(out, p) for p in files]}


def _lean_onnx(model):
    """Constant folding, dead-node and common-subexpression removal, constants as initializers,
    and no per-node debug metadata. The exporter's full optimiser adds operator-fusion rewrites
    on top, which take a third of the export time and which onnxruntime applies itself when it
    loads a graph."""
    import onnx_ir as ir
    from onnx_ir.passes import common
    from onnxscript import optimizer

    optimizer.fold_constants(model)
    ir.passes.Sequential(
        common.RemoveUnusedNodesPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.DeduplicateInitializersPass(),
        common.CommonSubexpressionEliminationPass(),
        common.RemoveUnusedNodesPass(),
    )(model)
    for node in model.graph:
        node.metadata_props.clear()
    return ir.serde.serialize_model(model)


# --- ExecuTorch -------------------------------------------------------------------------------
@register_format("executorch")
def write_executorch(job: ExportJob, out: Path) -> dict:
    """One .pte holding every method. Each piece a step uses (``graphs.Pieces``) is lowered to
    XNNPACK once; every step method is then a short graph of calls to the lowered pieces plus the
    plan's cache glue. A delegate blob used by several methods is stored once, and so are the
    weights (keyed by content)."""
    from executorch.exir import EdgeCompileConfig, to_edge

    # The edge-dialect IR check re-walks every graph after each stage; the golden-vector gate
    # checks what matters (the lowered program's outputs), so the IR check is not repeated here.
    config = EdgeCompileConfig(_check_ir_validity=False)
    steps = [g for g in job.graphs if isinstance(g.module, StepGraph)]
    lowered = _lower_pieces(steps, config, job) if steps else None
    programs = {}
    for g in job.graphs:
        job.progress(f"executorch method {g.name}")
        module = g.module
        if isinstance(module, StepGraph):
            module = module.with_pieces(lowered)
        elif isinstance(module, LatentDecoder):
            module = module.with_pixels(_lower_vae(module.pixels, g.example, config, job))
        programs[g.name] = _export_program(module, g.example)
    program = to_edge(programs, compile_config=config).to_executorch(_backend_config())
    path = out / "model.pte"
    with open(path, "wb") as f:
        program.write_to_file(f)
    files = [path]
    if job.separate_weights:
        program.write_tensor_data_to_file(str(out))
        files.append(out / f"{WEIGHTS_TAG}.ptd")
        if not files[-1].is_file():
            raise ExportError(f"ExecuTorch wrote no {files[-1].name} beside the program")
    return {"methods": {g.name: g.name for g in job.graphs}, "files": [_file_entry(out, p) for p in files]}


def _backend_config():
    """Method inputs are not memory-planned: a method reads the caller's tensors in place instead
    of holding a planned buffer for each input and copying into it per call. A lazy bundle's
    methods read many cache tensors each, and every method keeps its planned memory for as long
    as it is loaded (at DiT-XL/2, 2 GB more than the no-skip bundle's two methods)."""
    from executorch.exir import ExecutorchBackendConfig
    from executorch.exir.passes import MemoryPlanningPass

    return ExecutorchBackendConfig(memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False))


WEIGHTS_TAG = "model"  # the data file's name: model.ptd


def _weights_outside(program: torch.export.ExportedProgram, example, job: ExportJob) -> torch.export.ExportedProgram:
    """With separate weights, every constant the delegates take is tagged for the data file."""
    if not job.separate_weights:
        return program
    from executorch.exir.passes.external_constants_pass import delegate_external_constants_pass_unlifted

    module = program.module()
    delegate_external_constants_pass_unlifted(module=module, gen_tag_fn=lambda node: WEIGHTS_TAG)
    with torch.no_grad():
        return torch.export.export(module, example, strict=False)


def _lower_vae(pixels: nn.Module, example: tuple[torch.Tensor, ...], config, job: ExportJob) -> nn.Module:
    """The VAE decoder's float part as one XNNPACK delegate (see ``export/vae.py``); fp16
    bundles decode in fp16, int8 ones in fp32 (its convolutions are not quantized)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    job.progress("executorch lowering the VAE decoder to XNNPACK")
    if job.precision == "fp16":
        pixels = HalfPrecision(pixels)
    program = _weights_outside(_export_program(pixels, example), example, job)
    program = program.run_decompositions(XNNPACK_DECOMPOSITIONS)
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()], compile_config=config)
    return _LoweredPiece.of(edge.exported_program(), "decode")


def _lower_pieces(steps: list[GraphJob], config, job: ExportJob) -> nn.Module:
    """Every piece the steps call, each lowered to XNNPACK once, in a container shaped like
    ``Pieces`` so that ``StepGraph.with_pieces`` can call it. int8: each piece's linear layers
    are quantized first (XNNPACK's quantizer: per-channel int8 weights, int8 activations
    quantized per call), so a piece stays one unit shared by every step that calls it."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    pieces, dtype = steps[0].module.pieces, piece_dtype(job.precision)
    names = sorted({name for g in steps for name in g.module.used_pieces()})
    lowered = nn.Module()
    lowered.dtype = dtype
    lowered.compute, lowered.runs = nn.ModuleDict(), nn.ModuleDict()
    for i, name in enumerate(names):
        # one piece at a time, from export to delegate, so that a large model's intermediate
        # programs are never all held at once
        job.progress(f"executorch piece {i + 1}/{len(names)}: {name}")
        module, example = pieces.for_xnnpack(name, dtype), pieces.example(name, dtype)
        program = _export_program(module, example)
        if job.precision == "int8":
            program = _quantized(program, example)
        program = _weights_outside(program, example, job)
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()], compile_config=config)
        piece = _LoweredPiece.of(edge.exported_program(), name)
        del module, program, edge
        gc.collect()  # exported programs are cyclic: free this piece's copies before the next
        kind, _, key = name.partition(".")
        if key:
            getattr(lowered, kind)[key] = piece
        else:
            setattr(lowered, kind, piece)
    return lowered


def piece_dtype(precision: str) -> torch.dtype:
    return torch.float16 if precision == "fp16" else torch.float32


class HalfPrecision(nn.Module):
    """A float module run in fp16 between fp32 inputs and outputs."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(module).half()

    def forward(self, *args: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.module(*(a.half() for a in args))
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()


def _quantized(
    program: torch.export.ExportedProgram, example: tuple[torch.Tensor, ...]
) -> torch.export.ExportedProgram:
    """The program with XNNPACK's dynamic int8 quantization: per-channel symmetric int8 weights,
    activations quantized per call from their observed range (no calibration set needed)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    module = prepare_pt2e(program.module(), quantizer)
    module(*example)
    with torch.no_grad():
        return torch.export.export(convert_pt2e(module), example, strict=False)


# A lowered piece's own little program: each step is a delegate call or a cast, its operands
# the piece's inputs (int), its constants (str) or an earlier step's results ((step, index)).
Source = int | str | tuple[int, int]


class _LoweredPiece(nn.Module):
    """A piece's XNNPACK delegates (one, or a few when quantization splits the piece) called with
    the piece's own argument and result order. Tensors a delegate takes as inputs although they
    are the piece's constants (XNNPACK keeps some operands, e.g. an added buffer, as inputs) are
    held here and passed along; dtype casts between delegates run as they are."""

    def __init__(
        self,
        delegates: list[nn.Module],
        calls: list[tuple[str, object, list[Source]]],
        constants: dict[str, torch.Tensor],
        outputs: list[Source],
    ):
        super().__init__()
        self.delegates = nn.ModuleList(delegates)
        self.calls, self.outputs = calls, outputs
        for name, value in constants.items():
            self.register_buffer(name, value)

    def _value(self, source: Source, args, results) -> torch.Tensor:
        if isinstance(source, int):
            return args[source]
        if isinstance(source, str):
            return getattr(self, source)
        step, index = source
        return results[step][index]

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        results: list[tuple[torch.Tensor, ...]] = []
        for kind, what, sources in self.calls:
            operands = [self._value(s, args, results) for s in sources]
            results.append(self.delegates[what](*operands) if kind == "delegate" else (operands[0].to(what),))
        return tuple(self._value(s, args, results) for s in self.outputs)

    @classmethod
    def of(cls, program: torch.export.ExportedProgram, name: str) -> _LoweredPiece:
        import operator

        from executorch.exir.delegate import executorch_call_delegate

        graph, signature = program.graph, program.graph_signature
        owned = {
            **signature.inputs_to_parameters,
            **signature.inputs_to_buffers,
            **signature.inputs_to_lifted_tensor_constants,
        }

        def constant(node) -> torch.Tensor:
            target = owned[node.name]
            return program.state_dict[target] if target in program.state_dict else program.constants[target]

        # dtype casts of constants (a Python int the model divides by becomes an int64 scalar cast
        # to float) run once here, not as portable kernels beside the delegate
        folded = {
            n: constant(n.args[0]).to(n.kwargs["dtype"])
            for n in graph.nodes
            if n.op == "call_function"
            and "_to_dim_order_copy" in str(n.target)
            and n.args[0].name in owned
            and n.kwargs.get("dtype") is not None
        }
        refs: dict = {}  # graph node -> Source
        constants: dict[str, torch.Tensor] = {}
        delegates, calls = [], []

        def source(arg) -> Source:
            if arg in refs:
                return refs[arg]
            if arg.name in signature.user_inputs:
                return signature.user_inputs.index(arg.name)
            if arg in folded or arg.name in owned:
                key = f"const{len(constants)}"
                constants[key] = (folded[arg] if arg in folded else constant(arg)).detach().clone()
                refs[arg] = key
                return key
            raise RuntimeError(f"piece {name}: operand {arg.name} is neither an input, a constant nor a result")

        left = []
        for n in graph.nodes:
            if n.op != "call_function" or n in folded:
                continue
            if n.target is operator.getitem and n.args[0] in refs and isinstance(refs[n.args[0]], tuple):
                refs[n] = (refs[n.args[0]][0], n.args[1])
            elif n.target is executorch_call_delegate:
                delegate = getattr(program.graph_module, n.args[0].target)
                delegate._original_exported_program = _ShapeStandIn.program(n)
                calls.append(("delegate", len(delegates), [source(a) for a in n.args[1:]]))
                delegates.append(delegate)
                refs[n] = (len(calls) - 1, -1)
            elif "_to_dim_order_copy" in str(n.target) and n.kwargs.get("dtype") is not None:
                calls.append(("cast", n.kwargs["dtype"], [source(n.args[0])]))
                refs[n] = (len(calls) - 1, 0)
            else:
                left.append(getattr(n.target, "__name__", str(n.target)))
        if left or not delegates:
            raise RuntimeError(f"piece {name} did not lower to XNNPACK delegates (left outside: {sorted(set(left))})")
        output = next(n for n in graph.nodes if n.op == "output")
        outputs = []
        for result in output.args[0]:
            ref = refs.get(result)
            if ref is None or (isinstance(ref, tuple) and ref[1] == -1):
                raise RuntimeError(f"piece {name}: an output does not come from its delegates")
            outputs.append(ref)
        return cls(delegates, calls, constants, outputs)


class _ShapeStandIn(nn.Module):
    """Zeros shaped like a delegate's results. Every compiler pass over a graph that calls a
    lowered delegate re-runs the delegate's original program on fake tensors to learn its output
    shapes (after copying that program), which for a step of 18 calls costs seconds per pass;
    this stand-in gives the same shapes at no cost. The delegate's compiled blob is untouched."""

    def __init__(self, results: list[tuple[tuple[int, ...], torch.dtype]]):
        super().__init__()
        self.results = results

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(args[0].new_zeros(shape, dtype=dtype) for shape, dtype in self.results)

    @classmethod
    def program(cls, call) -> torch.export.ExportedProgram:
        results = [(tuple(v.shape), v.dtype) for v in call.meta["val"]]
        example = tuple(torch.zeros(a.meta["val"].shape, dtype=a.meta["val"].dtype) for a in call.args[1:])
        program = torch.export.export(cls(results), example, strict=False)
        program.__class__ = _UnliftedOnce
        return program


class _UnliftedOnce(torch.export.ExportedProgram):
    """An exported program that builds its callable module once (tracing calls it per pass)."""

    def module(self, *args, **kwargs):
        if "_unlifted" not in self.__dict__:
            self.__dict__["_unlifted"] = super().module(*args, **kwargs)
        return self.__dict__["_unlifted"]


# --- Core ML ----------------------------------------------------------------------------------
@register_format("coreml")
def write_coreml(job: ExportJob, out: Path) -> dict:
    """One multifunction .mlpackage (iOS 18, fp16 compute); save_multifunction dedups weights."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="coreml-", dir=out))
    path = out / "model.mlpackage"
    try:
        with _mil_validated_per_pipeline():
            _convert_coreml(job, tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {"methods": {g.name: g.name for g in job.graphs}, "files": [_file_entry(out, p) for p in files]}


def _convert_coreml(job: ExportJob, tmp: Path, path: Path) -> None:
    import coremltools as ct

    desc = ct.utils.MultiFunctionDescriptor()
    for g in job.graphs:
        job.progress(f"coreml {g.name}")
        program = _strip_aliases(job.program(g).run_decompositions({}))
        mlmodel = ct.convert(
            program,
            minimum_deployment_target=ct.target.iOS18,
            compute_precision=ct.precision.FLOAT32 if job.precision == "fp32" else ct.precision.FLOAT16,
            inputs=[
                ct.TensorType(name=n, shape=tuple(t.shape), dtype=_ct_dtype(t.dtype))
                for n, t in zip(g.input_names, g.example)
            ],
            outputs=[
                ct.TensorType(name=n, **({"dtype": np.float16} if d == "float16" else {}))
                for n, d in zip(g.output_names, g.output_dtypes or [None] * len(g.output_names))
            ],
            skip_model_load=True,
        )
        if job.precision == "int8":
            mlmodel = _coreml_int8(mlmodel)
        part = tmp / f"{g.name}.mlpackage"
        mlmodel.save(str(part))
        desc.add_function(str(part), src_function_name="main", target_function_name=g.name)
    desc.default_function_name = job.graphs[0].name
    job.progress("coreml merging the functions")
    unstamped = tmp / "merged.mlpackage"
    ct.utils.save_multifunction(desc, str(unstamped))
    merged = ct.models.MLModel(str(unstamped), skip_model_load=True, function_name=job.graphs[0].name)
    merged.author = job.metadata.get("author", "")
    merged.license = job.metadata.get("license", "")
    merged.version = job.metadata.get("version", "")
    merged.short_description = job.metadata.get("description", "")
    merged.user_defined_metadata.update(dict(job.metadata.items()))
    merged.save(str(path))


@contextlib.contextmanager
def _mil_validated_per_pipeline():
    """coremltools re-validates the whole MIL program after each of a pipeline's ~100 passes,
    over a third of the conversion time here. Inside this context a program is validated before
    and after each pipeline instead (a pass that broke it still fails the conversion), and the
    pipelines run without their progress bars (the exporter reports its own progress)."""
    from coremltools.converters.mil.mil.passes import pass_pipeline
    from coremltools.converters.mil.mil.program import Program

    validate, apply, bar = Program.validate, pass_pipeline.PassPipelineManager.apply_pipeline, pass_pipeline.tqdm

    def apply_validated(prog, pipeline):
        prog.validate()
        Program.validate = lambda self, *args, **kwargs: None
        try:
            apply(prog, pipeline)
        finally:
            Program.validate = validate
        prog.validate(check_essential_scope=True)

    pass_pipeline.PassPipelineManager.apply_pipeline = staticmethod(apply_validated)
    pass_pipeline.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        pass_pipeline.PassPipelineManager.apply_pipeline = staticmethod(apply)
        pass_pipeline.tqdm = bar


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


def _ct_dtype(dtype: torch.dtype):
    if dtype in (torch.int64, torch.int32):
        return np.int32
    return np.float16 if dtype == torch.float16 else np.float32


def _coreml_int8(mlmodel):
    """coremltools' weight quantization: per-channel symmetric int8 weights (fp16 compute)."""
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    config = OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"))
    return linear_quantize_weights(mlmodel, config)


def _file_entry(root: Path, path: Path) -> dict:
    return {"path": str(path.relative_to(root)), "sha256": sha256(path), "bytes": path.stat().st_size}


def metadata_json(data: dict) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))

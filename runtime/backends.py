"""Backends, registered by name. A backend loads the bundle's artifact for its format and runs
one method on a list of numpy arrays; it holds no state between calls and knows no model."""

from __future__ import annotations

import importlib
import os
import sys
from collections import OrderedDict
from collections.abc import Callable
from types import ModuleType

import numpy as np

from lazydit.registry import Registry

from .bundle import Bundle, BundleError
from .xnnpack import shared_workspace, weights_cache

BACKENDS: Registry[Callable[..., Backend]] = Registry("backend", BundleError)


def register_backend(name: str):
    """Register a Backend subclass under ``name`` (also its ``name``, used in reports)."""

    def wrap(cls):
        cls.name = name
        return BACKENDS.register(name)(cls)

    return wrap


class Backend:
    name = "base"
    fmt = ""

    def __init__(self, bundle: Bundle, threads: int | None = None):
        self.bundle = bundle
        self.threads = threads

    def run(self, method: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def output_names(self, method: str) -> list[str]:
        """The graph's own output names, to check against the manifest."""
        raise NotImplementedError

    def input_names(self, method: str) -> list[str]:
        raise NotImplementedError

    def check_io(self) -> None:
        """The manifest's method I/O must be what the graphs declare."""
        for name, method in self.bundle.methods.items():
            want_in = [i["name"] for i in method["inputs"]]
            want_out = [o["name"] for o in method["outputs"]]
            have_in, have_out = self.input_names(name), self.output_names(name)
            if have_in is not None and have_in != want_in:
                raise BundleError(
                    f"{self.name}: method {name} graph inputs {have_in} do not match the manifest {want_in}"
                )
            if have_out is not None and have_out != want_out:
                raise BundleError(
                    f"{self.name}: method {name} graph outputs {have_out} do not match the manifest {want_out}"
                )


def create_backend(name: str, bundle: Bundle, threads: int | None = None) -> Backend:
    """``torch``, the eager reference, is registered by ``lazydit.export`` when it is imported."""
    backend = BACKENDS[name](bundle, threads)
    backend.check_io()
    return backend


@register_backend("onnxruntime")
class OnnxRuntimeBackend(Backend):
    fmt = "onnx"

    def __init__(self, bundle: Bundle, threads: int | None = None):
        super().__init__(bundle, threads)
        import onnxruntime as ort

        _shared_arena(ort)
        art = bundle.artifact(self.fmt)
        # the sessions read these buffers for as long as they live: held here
        self.shared = shared = SharedWeights.of(bundle, art)
        self.weights_cache = "on" if shared else "off: the bundle has no onnx/weights.json"
        self.sessions = {}
        # fp16 weights are widened by Casts at the graph's start. Folded at load (what the full
        # optimiser does, constant folding and its layout passes alike), every session would
        # hold a private fp32 copy of its weights (28 GB for a DiT-XL/2 lazy bundle); left
        # unfolded, the sessions share the fp16 tensors and widen them per call.
        fp16 = bundle.manifest.get("precision", {}).get("name") == "fp16"
        level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED if fp16 else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        disabled = ["ConstantFolding"] if fp16 and shared else []
        for method, rel in art["methods"].items():
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
            opts.graph_optimization_level = level
            # the methods run one at a time: one arena for all of them (a session's own arena keeps
            # its peak for as long as the session lives)
            opts.add_session_config_entry("session.use_env_allocators", "1")
            # every method is its own session with its own thread pool; pools that spin after a run
            # steal the cores from the session that runs next (a 14-method bundle ran 2x slower)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if shared:
                shared.add_to(opts, method)
            try:
                self.sessions[method] = ort.InferenceSession(
                    str(bundle.root / rel), opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
                )
            except Exception as err:  # onnxruntime raises its own exception types
                raise BundleError(f"onnxruntime cannot load {rel}: {err}") from err
        self._inputs = {m: [i.name for i in s.get_inputs()] for m, s in self.sessions.items()}
        self._outputs = {m: [o.name for o in s.get_outputs()] for m, s in self.sessions.items()}

    def input_names(self, method: str) -> list[str]:
        return self._inputs[method]

    def output_names(self, method: str) -> list[str]:
        return self._outputs[method]

    def run(self, method: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.sessions[method].run(None, dict(zip(self._inputs[method], inputs)))


_ARENA: list = []  # onnxruntime's environment is one per process, and so is its shared arena


def _shared_arena(ort) -> None:
    """Register one CPU arena in onnxruntime's environment (once per process); sessions that set
    ``session.use_env_allocators`` draw from it instead of from an arena of their own."""
    if not _ARENA:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
        _ARENA.append(info)


class SharedWeights:
    """A bundle's ONNX weights read once and handed to every session as the same tensors
    (``SessionOptions.add_initializer``); prepacking is off, since each session would otherwise
    repack its own copy of every matrix. Tensors whose bytes, dtype and shape agree are one."""

    def __init__(self, blob: np.ndarray, table: dict[str, list]):
        self.blob, self.table = blob, table
        self.values: dict[tuple, object] = {}

    @classmethod
    def of(cls, bundle: Bundle, art: dict) -> SharedWeights | None:
        import json

        entry = next((f for f in art["files"] if f["path"].endswith("weights.json")), None)
        if entry is None:
            return None
        index = json.loads((bundle.root / entry["path"]).read_text())
        blob = np.fromfile(bundle.root / entry["path"].rsplit("/", 1)[0] / index["file"], dtype=np.uint8)
        return cls(blob, index["methods"])

    def add_to(self, opts, method: str) -> None:
        import onnxruntime as ort

        opts.add_session_config_entry("session.disable_prepacking", "1")
        for name, offset, length, dtype, shape in self.table.get(method, []):
            key = (offset, dtype, tuple(shape))
            if key not in self.values:
                array = self.blob[offset : offset + length].view(dtype).reshape(shape)
                self.values[key] = ort.OrtValue.ortvalue_from_numpy(array)
            opts.add_initializer(name, self.values[key])


def executorch_bindings() -> ModuleType:
    """ExecuTorch's bindings module (``_load_for_executorch`` etc.), on the desktop and in the emulated userland.

    Imports torch first (the bindings link libtorch) and the compiled module directly, named
    ``_portable_lib`` up to ExecuTorch 1.1 and ``_C`` after; inputs and outputs are
    ``torch.Tensor`` (``torch.from_numpy`` / ``.numpy()``). It skips ``portable_lib``, whose
    ``executorch.exir`` import pulls the whole exporter (about 35 s of imports under emulation
    against 12 s for this, and dependencies the aarch64 userland leaves out).
    """
    import torch  # noqa: F401

    for name in ("_C", "_portable_lib"):
        try:
            return importlib.import_module(f"executorch.extension.pybindings.{name}")
        except ModuleNotFoundError:
            continue
    raise BundleError("no ExecuTorch bindings found: prepare the device with executorch=True")


@register_backend("executorch")
class ExecuTorchBackend(Backend):
    """ExecuTorch through its pybindings module directly (no exporter imports), so the same code
    runs on the desktop and inside the emulated ARM64 userland."""

    fmt = "executorch"

    def __init__(self, bundle: Bundle, threads: int | None = None, resident: int | None = None):
        super().__init__(bundle, threads)
        bindings = executorch_bindings()
        import torch

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        art = bundle.artifact(self.fmt)
        path = bundle.root / next(f["path"] for f in art["files"] if f["path"].endswith(".pte"))
        data = [bundle.root / f["path"] for f in art["files"] if f["path"].endswith(".ptd")]
        for file in data:  # the bindings crash, not raise, on a missing data file
            if not file.is_file():
                raise BundleError(f"{file.name}, the weights of {path.name}, is missing; re-export the bundle")
        # every method calls the same lowered pieces: their packed weights are held once
        fp16 = bundle.manifest.get("precision", {}).get("name") == "fp16"
        self.weights_cache = weights_cache(bindings, not fp16) + (
            ": fp16 weights (see runtime/xnnpack.py)" if fp16 else ""
        )
        self.workspace = shared_workspace(bindings)  # methods run one at a time: one activation arena
        try:
            self.program = bindings._load_program(str(path), data_path=str(data[0]) if data else None)
            names = {self.program.get_method_name(i) for i in range(self.program.num_methods())}
        except Exception as err:  # the bindings raise RuntimeError/ValueError for bad programs
            raise BundleError(f"ExecuTorch cannot load {path.name}: {err} (truncated or corrupt? re-export)") from err
        missing = set(art["methods"].values()) - names
        if missing:
            raise BundleError(f"{path.name} lacks methods {sorted(missing)} named in the manifest; re-export")
        self.names = art["methods"]
        weight_bytes = sum(f["bytes"] for f in art["files"] if f["path"].endswith((".pte", ".ptd")))
        self.resident = resident_methods(len(self.names), weight_bytes, self.weights_cache == "on", resident)
        self._loaded: OrderedDict[str, object] = OrderedDict()  # loaded methods, least recently run first
        if self.resident >= len(self.names):
            for method in self.names.values():  # load everything up front: a bad delegate fails here
                self._method(method)

    def _method(self, name: str):
        """The loaded method ``name``; loading it first drops the least recently run one when
        ``resident`` methods are already held."""
        method = self._loaded.get(name)
        if method is None:
            while len(self._loaded) >= self.resident:
                self._loaded.popitem(last=False)
            try:
                method = self.program.load_method(name)
            except Exception as err:
                raise BundleError(f"ExecuTorch cannot load method {name}: {err} (corrupt? re-export)") from err
            self._loaded[name] = method
        self._loaded.move_to_end(name)
        return method

    def _count(self, method: str, kind: str) -> None:
        meta = self.program.method_meta(self.names[method])
        have = meta.num_inputs() if kind == "inputs" else meta.num_outputs()
        want = len(self.bundle.methods[method][kind])
        if have != want:
            raise BundleError(f"executorch: method {method} has {have} {kind}, the manifest lists {want}")

    def input_names(self, method: str) -> None:
        self._count(method, "inputs")  # a .pte carries no tensor names; the count is checked

    def output_names(self, method: str) -> None:
        self._count(method, "outputs")

    def run(self, method: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        # golden arrays are read-only views of the file; torch wants writable memory (copied only
        # then; np.require itself costs more than the conversion, so it is called only then)
        tensors = tuple(
            self.torch.from_numpy(a if _writable(a) else np.require(a, requirements=("C", "W"))) for a in inputs
        )
        return [o.numpy() for o in self._method(self.names[method]).call(tensors)]


def resident_methods(methods: int, weight_bytes: int, cache_on: bool, asked: int | None = None) -> int:
    """How many of a bundle's methods the ExecuTorch backend keeps loaded (``asked``, when given).

    With XNNPACK's weights cache on, the methods share one packed copy of the weights: all stay
    loaded. With it off (fp16 programs, see ``runtime/xnnpack.py``) each loaded method packs its
    own copy, widened to fp32 on CPUs without fp16 arithmetic: all stay loaded when those copies
    fit in a third of the memory available now, else one at a time, each loaded when it runs (a
    DiT-XL/2 fp16 lazy bundle: 21 methods of 2.7 GB packed each), so that a lazy bundle holds no
    more packed weights than the no-skip one."""
    if asked is not None:
        if asked < 1:
            raise BundleError(f"resident methods must be 1 or more, not {asked}")
        return min(asked, methods)
    if cache_on:
        return methods
    return methods if 2 * weight_bytes * methods <= available_bytes() // 3 else 1


def available_bytes() -> int:
    """Memory the system can hand out now without swapping (Linux MemAvailable); elsewhere the
    physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _writable(a: np.ndarray) -> bool:
    return a.flags.c_contiguous and a.flags.writeable


@register_backend("coreml")
class CoreMLBackend(Backend):
    fmt = "coreml"

    def __init__(self, bundle: Bundle, threads: int | None = None):
        super().__init__(bundle, threads)
        if sys.platform != "darwin":
            raise BundleError(
                "the coreml backend needs macOS (Core ML prediction does not run on "
                f"{sys.platform}); use onnxruntime or executorch here"
            )
        import coremltools as ct

        art = bundle.artifact(self.fmt)
        path = bundle.root / "model.mlpackage"
        self.models = {m: ct.models.MLModel(str(path), function_name=fn) for m, fn in art["methods"].items()}

    def input_names(self, method: str) -> list[str]:
        return [i.name for i in self.models[method].get_spec().description.input]

    def output_names(self, method: str) -> list[str]:
        return [o.name for o in self.models[method].get_spec().description.output]

    def run(self, method: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        names = self.input_names(method)
        feed = {n: (a.astype(np.int32) if a.dtype == np.int64 else a) for n, a in zip(names, inputs)}
        result = self.models[method].predict(feed)
        # Core ML returns its own dtypes (an image as floats); the loop wants the manifest's
        slots = self.bundle.manifest["slots"]
        targets = [o["target"] for o in self.bundle.methods[method]["outputs"]]
        return [np.asarray(result[n]).astype(slots[t]["dtype"]) for n, t in zip(self.output_names(method), targets)]

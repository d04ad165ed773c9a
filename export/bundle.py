"""Plan -> bundle: unique step graphs, artifacts per format, golden vectors, manifest, and the
correctness gate. The bundle is built in a temporary folder next to its destination and renamed
into place only when every check passed, so a failure leaves nothing behind."""

from __future__ import annotations

import json
import logging
import multiprocessing
import queue as queue_module
import shutil
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from lazydit.runtime.bundle import Bundle, BundleError
from lazydit.runtime.tensorfile import write_tensors

from lazydit import __version__
from lazydit.checkpoints import weights_hash
from lazydit.diffusion import DDIMSchedule, initial_noise
from lazydit.macs import plan_macs
from lazydit.model import MODULES, DiT
from lazydit.plans import Plan, PlanError

from .formats import FORMATS, ExportJob, GraphJob, metadata_json, onnx_models, save_onnx, sha256
from .graphs import DecodeGraph, Pieces, StepGraph, cache_shape, example_inputs, step_specs

PSNR_GATE_DB = 40.0
FULL_GOLDEN_LIMIT = 64 << 20  # bytes; above it the golden file keeps each step's sample, not every cache
RUNNABLE = {"onnx": "onnxruntime", "executorch": "executorch"}
DECODE = "decode"
# Formats written side by side, one process per group: ExecuTorch lowering in the exporting
# process, Core ML in the other; ONNX methods are shared out between both as each finishes.
FORMAT_GROUPS = (("executorch",), ("coreml", "onnx"))
SHARED = "onnx"  # converted by both processes (method by method), written by the exporting one


class ExportError(RuntimeError):
    pass


@dataclass
class ExportOptions:
    formats: tuple[str, ...] = ("executorch", "coreml", "onnx")
    label: int = 0
    cfg_scale: float = 1.5
    seed: int = 0
    force: bool = False
    check: bool = True
    timing_only: bool = False
    model_source: str = "default"  # how the torch backend finds the model again
    author: str = "lazydit"
    license: str = "MIT"
    progress: bool = True
    timings: dict = field(default_factory=dict)


def method_table(plan: Plan) -> tuple[list, dict[tuple, str], list[str]]:
    """Specs per step, one method name per unique spec, and each step's method."""
    specs = step_specs(plan)
    names: dict[tuple, str] = {}
    for k, spec in enumerate(specs):
        names.setdefault(spec.key, f"step_{k:02d}")
    return specs, names, [names[s.key] for s in specs]


def build_manifest(model: DiT, plan: Plan, options: ExportOptions) -> dict:
    config = model.config
    schedule = DDIMSchedule(plan.steps)
    specs, names, step_methods = method_table(plan)
    macs = plan_macs(config, plan)
    methods, slots = {}, {}
    c = config
    image_shape = [1, c.input_size, c.input_size] + ([] if c.in_channels == 1 else [3])
    slots["x"] = {"shape": [1, c.in_channels, c.input_size, c.input_size], "dtype": "float32"}
    slots["y"] = {"shape": [1], "dtype": "int64"}
    slots["cfg_scale"] = {"shape": [1], "dtype": "float32"}
    slots["image"] = {"shape": image_shape, "dtype": "uint8"}
    for spec in specs:
        name = names[spec.key]
        if name in methods:
            continue
        methods[name] = {"inputs": [{"name": n, "source": s} for n, s in spec.inputs()],
                         "outputs": [{"name": n, "target": t} for n, t in spec.outputs()]}
        for _, s in spec.inputs() + spec.outputs():
            if s.startswith("cache:"):
                slots[s] = {"shape": cache_shape(model), "dtype": "float32"}
    methods[DECODE] = {"inputs": [{"name": "x", "source": "x"}], "outputs": [{"name": "image", "target": "image"}]}
    steps = []
    for k, spec in enumerate(specs):
        skipped = len(MODULES) * c.depth - spec.computed
        steps.append({"index": k, "method": step_methods[k], "scalars": schedule.scalars(k),
                      "computed": spec.computed, "skipped": skipped, "macs": macs["per_step"][k]})
    return {
        "format": "lazydit-bundle", "version": 1,
        "model": {"name": c.name, "config": c.to_dict(), "weights_hash": weights_hash(model),
                  "image": {"height": c.input_size, "width": c.input_size, "channels": 1 if c.in_channels == 1 else 3},
                  "num_classes": c.num_classes, "null_class": c.num_classes, "timing_only": options.timing_only},
        "sampler": schedule.to_dict(),
        "plan": plan.to_dict(config),
        "slots": dict(sorted(slots.items(), key=lambda kv: (kv[0].startswith("cache:"), kv[0]))),
        "methods": methods,
        "steps": steps,
        "decode": DECODE,
        "artifacts": {},
        "golden": {},
        "metadata": {"model_source": options.model_source, "author": options.author, "license": options.license, "version": __version__,
                     "created": datetime.now(UTC).isoformat(timespec="seconds")},
    }


def graph_modules(model: DiT, plan: Plan) -> dict[str, torch.nn.Module]:
    specs, names, _ = method_table(plan)
    pieces = Pieces(model).eval()
    graphs = {}
    for spec in specs:
        graphs.setdefault(names[spec.key], StepGraph(model, spec, pieces).eval())
    graphs[DECODE] = DecodeGraph(model.config.in_channels).eval()
    return graphs


def eager_graphs(manifest: dict) -> dict[str, torch.nn.Module]:
    """The torch backend's graphs: rebuilt from the weights hash's model and the manifest's plan."""
    from lazydit.checkpoints import resolve_model

    source = manifest.get("metadata", {}).get("model_source", "default")
    if source.startswith("timing:"):
        _, size, seed = source.split(":")
        model = timing_model(size, int(seed))
    else:
        model = resolve_model(source)
    if weights_hash(model) != manifest["model"]["weights_hash"]:
        raise BundleError(f"the torch backend needs the bundle's model; {source} has other weights")
    return graph_modules(model, Plan.from_dict(manifest["plan"]))


def golden_vectors(model: DiT, plan: Plan, options: ExportOptions,
                   graphs: dict[str, torch.nn.Module]) -> dict[str, np.ndarray]:
    """Run the unique graphs eagerly over the steps and record every input and output; the
    sample after each step is checked against the reference sampler's."""
    from lazydit.sampler import sample

    c = model.config
    noise = initial_noise(1, (c.in_channels, c.input_size, c.input_size), options.seed)
    label = torch.tensor([options.label])
    reference = []
    sample(model, noise, label, plan, options.cfg_scale, on_step=lambda r: reference.append(r.x.clone()))
    _, _, step_methods = method_table(plan)
    specs = [graphs[name].spec for name in step_methods]
    schedule = DDIMSchedule(plan.steps)
    state = {"x": noise, "y": label, "cfg_scale": torch.tensor([options.cfg_scale])}
    golden = {"init/x": noise.numpy(), "init/y": label.numpy(), "init/cfg_scale": np.float32([options.cfg_scale])}
    cache_bytes = 4 * int(np.prod(cache_shape(model)))
    io_bytes = sum(cache_bytes * (len(s.inputs()) + len(s.outputs())) for s in specs)
    full = io_bytes <= FULL_GOLDEN_LIMIT
    with torch.no_grad():
        for k, spec in enumerate(specs):
            s = schedule.scalars(k)
            feed = [state[src] if src in state else torch.tensor([s[src]], dtype=torch.float32)
                    for _, src in spec.inputs()]
            outs = graphs[step_methods[k]](*feed)
            for (name, src), value in zip(spec.inputs(), feed):
                if full or not src.startswith("cache:"):
                    golden[f"step/{k}/in/{name}"] = value.numpy()
            for (name, target), value in zip(spec.outputs(), outs):
                if full or target == "x":
                    golden[f"step/{k}/out/{name}"] = value.numpy()
                state[target] = value
            if not torch.allclose(state["x"], reference[k], atol=1e-5, rtol=1e-4):
                raise ExportError(f"step graph {step_methods[k]} disagrees with the reference sampler at step {k}")
        golden["decode/out/image"] = graphs[DECODE](state["x"]).numpy()
    return golden


def export_bundle(model: DiT, plan: Plan | None, out: str | Path, options: ExportOptions | None = None) -> Path:
    """Build ``out`` (a bundle folder). Raises ExportError/PlanError and leaves nothing on failure."""
    options = options or ExportOptions()
    out = Path(out)
    plan = plan or Plan.full(50, model.config.depth)
    plan.check_model(model.config)
    if plan.model.get("weights_hash") and plan.model["weights_hash"] != weights_hash(model) and not options.timing_only:
        raise PlanError(f"plan was made for another model (weights {plan.model['weights_hash']}); "
                        "make a plan for this model with `lazydit plan`")
    unknown = set(options.formats) - set(FORMATS)
    if unknown:
        raise ExportError(f"unknown formats {sorted(unknown)}; choose from {sorted(FORMATS)}")
    if not 0 <= options.label < model.config.num_classes:
        raise ExportError(f"label {options.label} is not a class of this model (0..{model.config.num_classes - 1})")
    if out.exists() and not options.force:
        raise ExportError(f"{out} already exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    model = model.eval()
    say = _printer(options.progress)
    try:
        t0 = time.perf_counter()
        manifest = build_manifest(model, plan, options)
        graphs = graph_modules(model, plan)
        golden = golden_vectors(model, plan, options, graphs)
        write_tensors(tmp / "golden.lzt", golden)
        _write_png(tmp / "sample.png", golden["decode/out/image"][0])
        manifest["golden"] = {"path": "golden.lzt", "sha256": sha256(tmp / "golden.lzt"), "label": options.label,
                              "cfg_scale": options.cfg_scale, "seed": options.seed}
        stamp = {"author": options.author, "license": options.license, "version": __version__,
                 "description": f"lazydit {model.config.name} DDIM-{plan.steps} {plan.policy} "
                                f"lazy {plan.lazy_ratio:.2f}",
                 "plan": metadata_json(plan.to_dict())}
        jobs = []
        for name, module in graphs.items():
            spec_io = manifest["methods"][name]
            example = (torch.zeros(1, model.config.in_channels, model.config.input_size, model.config.input_size),) \
                if name == DECODE else example_inputs(model, module.spec)
            jobs.append(GraphJob(name, module, example, [i["name"] for i in spec_io["inputs"]],
                                 [o["name"] for o in spec_io["outputs"]]))
        options.timings["prepare_s"] = time.perf_counter() - t0
        artifacts, timings = write_formats(jobs, stamp, options.formats, tmp, say)
        for fmt in options.formats:
            manifest["artifacts"][fmt] = artifacts[fmt]
            options.timings[f"{fmt}_s"] = timings[fmt]
        _write_manifest(tmp, manifest)
        if options.check:
            t1 = time.perf_counter()
            options.timings["gate"] = correctness_gate(tmp, options.formats, say)
            options.timings["gate_s"] = time.perf_counter() - t1
        if out.exists():
            trash = out.with_name(f".{out.name}.old")
            out.rename(trash)
            tmp.rename(out)
            shutil.rmtree(trash)
        else:
            tmp.rename(out)
        options.timings["total_s"] = time.perf_counter() - t0
        return out
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def format_groups(formats: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The requested formats split into the groups written concurrently (order kept in a group)."""
    grouped = [tuple(f for f in formats if f in group) for group in FORMAT_GROUPS]
    rest = tuple(f for f in formats if not any(f in group for group in FORMAT_GROUPS))
    return [g for g in [*grouped, rest] if g]


def write_formats(jobs: list[GraphJob], stamp: dict, formats: tuple[str, ...], root: Path,
                  say) -> tuple[dict[str, dict], dict[str, float]]:
    """Write every format's artifacts into ``root``: the first group in this process, the other
    groups in one spawned process running alongside. ONNX methods convert independently, so
    each process, once its own formats are written, takes ONNX methods from a shared queue until
    none are left, and this process writes the ONNX files. Any failure fails the whole export;
    the other process is stopped before the error propagates."""
    groups = format_groups(formats)
    if len(groups) < 2:
        return _write_group(jobs, stamp, formats, root, say)[:2]
    shared = SHARED in formats
    here = tuple(f for f in groups[0] if f != SHARED)
    there = tuple(f for g in groups[1:] for f in g if f != SHARED)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    for job in jobs if shared else ():
        queue.put(job.name)
    receive, send = ctx.Pipe(duplex=False)
    worker = ctx.Process(target=_group_worker, name=f"lazydit-export-{'-'.join(there) or SHARED}", daemon=True,
                         args=(send, jobs, stamp, there, queue, root, getattr(say, "start", None), _quiet_state()))
    worker.start()
    send.close()
    try:
        artifacts, timings, models = _write_group(jobs, stamp, here, root, say, queue)
        status, *result = _receive(receive, worker)
        if status != "ok":
            error, remote = result
            raise ExportError(f"writing {', '.join(there) or SHARED} failed: {error}\n{remote}")
        artifacts.update(result[0])
        timings.update({k: v + timings.get(k, 0.0) for k, v in result[1].items()})
        models.update(result[2])
        if shared:
            t = time.perf_counter()
            # a name neither process saw (a queue read that timed out early) is converted here
            missing = [j.name for j in jobs if j.name not in models]
            models.update(onnx_models(ExportJob(jobs, stamp, say), missing) if missing else {})
            artifacts[SHARED] = save_onnx({j.name: models[j.name] for j in jobs}, stamp, root)
            timings[SHARED] = timings.get(SHARED, 0.0) + time.perf_counter() - t
        return artifacts, timings
    finally:
        if worker.is_alive():
            worker.terminate()
        worker.join()
        receive.close()
        queue.close()


def _write_group(jobs: list[GraphJob], stamp: dict, formats: tuple[str, ...], root: Path, say,
                 onnx_queue=None) -> tuple[dict[str, dict], dict[str, float], dict]:
    """This process's formats, then (given a queue) ONNX methods from the queue until it is empty:
    artifacts and seconds per format, and the ONNX models converted here."""
    artifacts, timings, models = {}, {}, {}
    job = ExportJob(jobs, stamp, say)  # one trace per method, shared by the formats of this process
    for fmt in formats:
        t = time.perf_counter()
        say(f"writing {fmt} ({len(jobs)} methods)")
        artifacts[fmt] = FORMATS[fmt](job, root)
        timings[fmt] = time.perf_counter() - t
    if onnx_queue is None:
        return artifacts, timings, models
    t = time.perf_counter()
    while True:
        try:
            name = onnx_queue.get(timeout=0.1)
        except queue_module.Empty:
            break
        models.update(onnx_models(job, [name]))
    if models:
        timings[SHARED] = time.perf_counter() - t
    return artifacts, timings, models


def _group_worker(send, jobs, stamp, formats, onnx_queue, root, start, quiet) -> None:
    filters, levels = quiet
    warnings.filters[:] = filters
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    say = _printer(start is not None, start)
    try:
        send.send(("ok", *_write_group(jobs, stamp, formats, root, say, onnx_queue)))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the exporting process
        send.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        send.close()


def _receive(conn, worker):
    while not conn.poll(0.5):
        if not worker.is_alive() and not conn.poll(0):
            raise ExportError(f"the process writing the other formats stopped (exit code {worker.exitcode})")
    try:
        return conn.recv()
    except EOFError as exc:
        raise ExportError(f"the process writing the other formats stopped (exit code {worker.exitcode})") from exc


def _quiet_state() -> tuple[list, dict[str, int]]:
    """This process's warning filters and logger levels, so a worker is as quiet as its parent."""
    levels = {name: logger.level for name, logger in logging.root.manager.loggerDict.items()
              if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET}
    return list(warnings.filters), levels


def correctness_gate(root: Path, formats: tuple[str, ...], say=print) -> dict:
    """Every runnable format must replay the golden vectors at >= 40 dB on every step and the
    image; Core ML is checked structurally here (prediction needs macOS)."""
    from lazydit.runtime.backends import create_backend
    from lazydit.runtime.loop import verify

    bundle = Bundle.load(root)
    report = {}
    for fmt in formats:
        if fmt == "coreml":
            report[fmt] = check_coreml_spec(bundle)
            if __import__("sys").platform != "darwin":
                continue
            backend_name = "coreml"
        else:
            backend_name = RUNNABLE[fmt]
        say(f"checking {fmt} against the eager reference")
        result = verify(create_backend(backend_name, bundle))
        report[fmt] = {**report.get(fmt, {}), **result}
        if result["min_psnr_db"] < PSNR_GATE_DB:
            worst = int(np.argmin(result["per_step_psnr_db"]))
            raise ExportError(f"{fmt} output differs from the eager reference: {result['min_psnr_db']:.1f} dB "
                              f"(worst step {worst}), under the {PSNR_GATE_DB:.0f} dB gate")
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
            raise ExportError(f"Core ML function {fn}: I/O {have_in} -> {have_out} does not match the manifest "
                              f"{want_in} -> {want_out}")
        for i in desc.input:
            shape = list(i.type.multiArrayType.shape)
            source = next(x["source"] for x in bundle.methods[method]["inputs"] if x["name"] == i.name)
            want = bundle.manifest["slots"][source]["shape"] if source in bundle.manifest["slots"] else [1]
            if shape != want:
                raise ExportError(f"Core ML function {fn}: input {i.name} has shape {shape}, the manifest {want}")
    return {"functions": len(functions), "spec_checked": True}


def _write_manifest(root: Path, manifest: dict) -> None:
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    im = Image.fromarray(image)
    im.resize((image.shape[1] * 8, image.shape[0] * 8), Image.NEAREST).save(path)


def _printer(enabled: bool, start: float | None = None):
    """Progress lines stamped with the seconds since ``start`` (perf_counter is system-wide on
    the platforms we export on, so a worker's lines share the parent's clock)."""
    start = time.perf_counter() if start is None else start

    def say(msg: str) -> None:
        if enabled:
            print(f"[{time.perf_counter() - start:6.1f}s] {msg}", flush=True)

    say.start = start if enabled else None
    return say


def timing_model(size: str, seed: int = 0) -> DiT:
    """Random-weight DiT of a registry size for latency measurement only (outputs are noise)."""
    from lazydit.model import build_model

    torch.manual_seed(seed)
    model = build_model(size)
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.02)
    return model.eval()


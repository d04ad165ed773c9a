"""Plan -> bundle: unique step graphs, artifacts per format, golden vectors, manifest, and the
correctness gate. The bundle is built in a temporary folder next to its destination and renamed
into place only when every check passed, so a failure leaves nothing behind."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lazydit import __version__
from lazydit.checkpoints import weights_hash
from lazydit.diffusion import DDIMSchedule, initial_noise
from lazydit.executor import sample
from lazydit.macs import add_macs, plan_macs
from lazydit.model import MODULES, DiT
from lazydit.options import opt
from lazydit.pipelines import LatentDecoder, vae_image
from lazydit.plans import Plan, PlanError
from lazydit.runtime.tensorfile import write_tensors

from .formats import FORMATS, ExportError, GraphJob, metadata_json, sha256
from .gate import correctness_gate
from .graphs import DecodeGraph, MethodTable, Pieces, StepGraph, cache_shape, example_inputs
from .precision import precision
from .progress import printer
from .writers import write_formats

FULL_GOLDEN_LIMIT = 64 << 20  # bytes; above it the golden file keeps each step's sample, not every cache
DECODE = "decode"


@dataclass
class ExportOptions:
    formats: tuple[str, ...] = opt(("executorch", "coreml", "onnx"), "formats to write")
    precision: str = opt(
        "fp32",
        "weights and compute: fp32, fp16 or int8 (every format; see docs/precision.md)",
        ("fp32", "fp16", "int8"),
    )
    weights_file: str = opt(
        "auto",
        "ExecuTorch weights in a data file beside the program (model.ptd): auto (when they pass 1.5 GB), always, never",
        ("auto", "always", "never"),
    )
    label: int = opt(0, "class of the golden sample")
    cfg_scale: float = opt(1.5, "guidance scale of the golden sample")
    seed: int = opt(0, "noise seed of the golden sample")
    check: bool = opt(True, "replay the golden vectors on every runnable format before accepting the bundle")
    force: bool = opt(False, "replace an existing bundle")
    author: str = opt("lazydit", "author stamped into every artifact")
    license: str = opt("MIT", "license stamped into every artifact")
    timing_only: bool = False  # random weights: the bundle exists to be timed
    model_source: str = "default"  # how the torch backend finds the model again (with the two below)
    model_size: str | None = None
    vae: str | None = None
    progress: bool = True
    timings: dict = field(default_factory=dict)  # filled by the export: seconds per stage, the gate's report


def _pixel_image(arch) -> dict:
    """A model without a VAE shows its sample itself: grey, or (a latent model's timing stand-in)
    its first three channels as RGB."""
    return {"height": arch.input_size, "width": arch.input_size, "channels": 1 if arch.in_channels == 1 else 3}


def build_manifest(
    model: DiT, plan: Plan, table: MethodTable, plan_json: dict, options: ExportOptions, vae: nn.Module | None = None
) -> dict:
    """The manifest without artifacts and golden vectors; ``plan_json`` is the plan's JSON, to
    which the MAC counts are added."""
    arch = model.config
    schedule = DDIMSchedule(plan.steps)
    macs = plan_macs(arch, plan)
    methods, slots = {}, {}
    image = vae_image(vae, arch.input_size) if vae is not None else _pixel_image(arch)
    image_shape = [1, image["height"], image["width"]] + ([] if image["channels"] == 1 else [image["channels"]])
    slots["x"] = {"shape": [1, arch.in_channels, arch.input_size, arch.input_size], "dtype": "float32"}
    slots["y"] = {"shape": [1], "dtype": "int64"}
    slots["cfg_scale"] = {"shape": [1], "dtype": "float32"}
    slots["image"] = {"shape": image_shape, "dtype": "uint8"}
    cache_dtype = precision(options.precision).cache_dtype
    for name, spec in table.methods().items():
        methods[name] = {
            "inputs": [{"name": n, "source": s} for n, s in spec.inputs()],
            "outputs": [{"name": n, "target": t} for n, t in spec.outputs()],
        }
        for _, s in spec.inputs() + spec.outputs():
            if s.startswith("cache:"):
                slots[s] = {"shape": cache_shape(model), "dtype": cache_dtype}
    methods[DECODE] = {"inputs": [{"name": "x", "source": "x"}], "outputs": [{"name": "image", "target": "image"}]}
    steps = []
    for k, (spec, method) in enumerate(zip(table.specs, table.step_methods)):
        skipped = len(MODULES) * arch.depth - spec.computed
        steps.append(
            {
                "index": k,
                "method": method,
                "scalars": schedule.scalars(k),
                "computed": spec.computed,
                "skipped": skipped,
                "macs": macs["per_step"][k],
            }
        )
    return {
        "format": "lazydit-bundle",
        "version": 1,
        "model": {
            "name": arch.name,
            "config": arch.to_dict(),
            "weights_hash": weights_hash(model),
            "image": image,
            "num_classes": arch.num_classes,
            "null_class": arch.num_classes,
            "timing_only": options.timing_only,
            **({} if vae is None else {"vae": _vae_entry(vae)}),
        },
        "sampler": {**schedule.to_dict(), **plan.sampler.to_dict()},
        "precision": precision(options.precision).record(options.formats),
        "plan": add_macs(plan_json, macs),
        "slots": dict(sorted(slots.items(), key=lambda kv: (kv[0].startswith("cache:"), kv[0]))),
        "methods": methods,
        "steps": steps,
        "decode": DECODE,
        "artifacts": {},
        "golden": {},
        "metadata": {
            "model_source": options.model_source,
            **{k: v for k, v in (("model_size", options.model_size), ("vae", options.vae)) if v is not None},
            "author": options.author,
            "license": options.license,
            "version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }


def _vae_entry(vae: nn.Module) -> dict:
    """The manifest's record of a latent model's decoder: its scaling and its configuration."""
    config = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
    return {"scaling_factor": float(vae.config.scaling_factor), "config": config}


def graph_modules(
    model: DiT, plan: Plan, table: MethodTable, vae: nn.Module | None = None, cache_dtype: torch.dtype = torch.float32
) -> dict[str, torch.nn.Module]:
    pieces = Pieces(model, plan.sampler).eval()
    graphs = {name: StepGraph(model, spec, pieces, cache_dtype).eval() for name, spec in table.methods().items()}
    graphs[DECODE] = (LatentDecoder(vae) if vae is not None else DecodeGraph(model.config.in_channels)).eval()
    return graphs


def golden_vectors(
    model: DiT,
    plan: Plan,
    table: MethodTable,
    options: ExportOptions,
    graphs: dict[str, torch.nn.Module],
    say=lambda msg: None,
) -> dict[str, np.ndarray]:
    """Run the unique graphs eagerly (fp32) over the steps and record every input and output;
    the sample after each step is checked against the reference executor's. Cache tensors are
    stored in the bundle's cache dtype (what a runtime's slots hold)."""
    arch = model.config
    noise = initial_noise(1, (arch.in_channels, arch.input_size, arch.input_size), options.seed)
    label = torch.tensor([options.label])
    reference = []
    say(f"golden vectors: the reference executor's {plan.steps} steps")
    sample(model, noise, label, plan, options.cfg_scale, on_step=lambda r: reference.append(r.x.clone()))
    say(f"golden vectors: the {len(table.methods())} step graphs over {plan.steps} steps")
    specs, step_methods = table.specs, table.step_methods
    schedule = DDIMSchedule(plan.steps)
    state = {"x": noise, "y": label, "cfg_scale": torch.tensor([options.cfg_scale])}
    golden = {"init/x": noise.numpy(), "init/y": label.numpy(), "init/cfg_scale": np.float32([options.cfg_scale])}
    cache_dtype = np.dtype(precision(options.precision).cache_dtype)
    cache_bytes = cache_dtype.itemsize * int(np.prod(cache_shape(model)))
    io_bytes = sum(cache_bytes * (len(s.inputs()) + len(s.outputs())) for s in specs)
    full = io_bytes <= FULL_GOLDEN_LIMIT
    with torch.no_grad():
        for k, spec in enumerate(specs):
            s = schedule.scalars(k)
            feed = [
                state[src] if src in state else torch.tensor([s[src]], dtype=torch.float32) for _, src in spec.inputs()
            ]
            outs = graphs[step_methods[k]](*feed)
            for (name, src), value in zip(spec.inputs(), feed):
                if full or not src.startswith("cache:"):
                    golden[f"step/{k}/in/{name}"] = _as_slot(value, src, cache_dtype)
            for (name, target), value in zip(spec.outputs(), outs):
                if full or target == "x":
                    golden[f"step/{k}/out/{name}"] = _as_slot(value, target, cache_dtype)
                state[target] = value
            if not torch.allclose(state["x"], reference[k], atol=1e-5, rtol=1e-4):
                raise ExportError(f"step graph {step_methods[k]} disagrees with the reference executor at step {k}")
        golden["decode/out/image"] = graphs[DECODE](state["x"]).numpy()
    return golden


SEPARATE_WEIGHTS_BYTES = 1536 << 20  # a .pte is one flatbuffer, which stops at 2 GB


def _separate_weights(model: DiT, vae: nn.Module | None, options: ExportOptions) -> bool:
    if options.weights_file != "auto":
        return options.weights_file == "always"
    modules = [model] + ([vae] if vae is not None else [])
    per_weight = {"fp32": 4, "fp16": 2, "int8": 1}[options.precision]  # bytes as the program stores them
    return sum(p.numel() for m in modules for p in m.parameters()) * per_weight > SEPARATE_WEIGHTS_BYTES


def _as_slot(value: torch.Tensor, slot_name: str, cache_dtype: np.dtype) -> np.ndarray:
    array = value.numpy()
    return array.astype(cache_dtype) if slot_name.startswith("cache:") else array


def export_bundle(
    model: DiT, plan: Plan | None, out: str | Path, options: ExportOptions | None = None, vae: nn.Module | None = None
) -> Path:
    """Build ``out`` (a bundle folder). ``vae``: a latent model's decoder (diffusers' AutoencoderKL),
    which becomes the ``decode`` method. Raises ExportError/PlanError and leaves nothing on failure."""
    options = options or ExportOptions()
    out = Path(out)
    plan = plan or Plan.full(50, model.config.depth, sampler=model.sampler)
    plan.check_model(model.config)
    made_for = plan.base.get("weights_hash")
    if made_for and made_for != weights_hash(model) and not options.timing_only:
        raise PlanError(
            f"plan was made for another model (weights {made_for}); make a plan for this model with `lazydit plan`"
        )
    chosen = precision(options.precision)
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
    say = printer(options.progress)
    try:
        t0 = time.perf_counter()
        table = MethodTable.of(plan)
        plan_json = plan.to_dict()
        stamp = {
            "author": options.author,
            "license": options.license,
            "version": __version__,
            "description": f"lazydit {model.config.name} DDIM-{plan.steps} {plan.policy} lazy {plan.lazy_ratio:.2f}",
            "plan": metadata_json(plan_json),
            "precision": chosen.name,
            "executorch_weights": "model.ptd" if _separate_weights(model, vae, options) else "model.pte",
        }
        manifest = build_manifest(model, plan, table, plan_json, options, vae)
        graphs = graph_modules(model, plan, table, vae)
        golden = golden_vectors(model, plan, table, options, graphs, say)
        if chosen.cache_dtype != "float32":  # the formats' graphs read and write the caches in that dtype
            graphs = graph_modules(model, plan, table, vae, chosen.cache_torch_dtype)
        write_tensors(tmp / "golden.lzt", golden)
        _write_png(tmp / "sample.png", golden["decode/out/image"][0])
        manifest["golden"] = {
            "path": "golden.lzt",
            "sha256": sha256(tmp / "golden.lzt"),
            "label": options.label,
            "cfg_scale": options.cfg_scale,
            "seed": options.seed,
            "floor_db": chosen.floor_db,
        }
        jobs = []
        for name, module in graphs.items():
            spec_io = manifest["methods"][name]
            example = (
                (torch.zeros(1, model.config.in_channels, model.config.input_size, model.config.input_size),)
                if name == DECODE
                else example_inputs(model, module.spec, chosen.cache_torch_dtype)
            )
            jobs.append(
                GraphJob(
                    name,
                    module,
                    example,
                    [i["name"] for i in spec_io["inputs"]],
                    [o["name"] for o in spec_io["outputs"]],
                    [manifest["slots"][o["target"]]["dtype"] for o in spec_io["outputs"]],
                )
            )
        options.timings["prepare_s"] = time.perf_counter() - t0
        artifacts, timings = write_formats(jobs, stamp, options.formats, tmp, say)
        for fmt in options.formats:
            manifest["artifacts"][fmt] = artifacts[fmt]
            options.timings[f"{fmt}_s"] = timings[fmt]
        _write_manifest(tmp, manifest)
        del jobs, graphs, golden
        _release_memory()  # the gate loads every artifact: the exporter's copies go first
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


def _release_memory() -> None:
    """Free the graphs' cyclic garbage now and hand freed heap back to the system (glibc keeps
    it otherwise): at DiT-XL/2 the step graphs' weight copies are gigabytes the gate needs."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: freed memory is reused, just not returned
        pass


def _write_manifest(root: Path, manifest: dict) -> None:
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    im = Image.fromarray(image)
    im.resize((image.shape[1] * 8, image.shape[0] * 8), Image.NEAREST).save(path)


def timing_model(size: str, seed: int = 0) -> DiT:
    """Random-weight DiT of a registry size for latency measurement only (outputs are noise)."""
    from lazydit.model import build_model

    torch.manual_seed(seed)
    model = build_model(size)
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.02)
    return model.eval()

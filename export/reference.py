"""The eager reference backend (``--backend torch``): the bundle's step graphs run in PyTorch.

It lives on the exporter's side because it is the one backend that needs the model and the plan:
it rebuilds both from the manifest (the model from ``metadata.model_source``, checked against the
weights hash; the plan from ``plan``). Importing ``lazydit.export`` registers it with the runtime,
so the runtime itself stays free of any DiT code, as the phones are."""

from __future__ import annotations

import numpy as np
import torch

from lazydit.checkpoints import weights_hash
from lazydit.pipelines import ModelSource, load, random_vae
from lazydit.plans import Plan
from lazydit.runtime.backends import Backend, register_backend
from lazydit.runtime.bundle import Bundle, BundleError

from .bundle import graph_modules, timing_model
from .graphs import MethodTable


def eager_graphs(manifest: dict) -> dict[str, torch.nn.Module]:
    """The bundle's graphs, rebuilt from the model its weights hash names and the manifest's plan."""
    meta = manifest.get("metadata", {})
    source = meta.get("model_source", "default")
    if source.startswith("timing:"):
        _, size, seed = source.split(":")
        model = timing_model(size, int(seed))
        vae = random_vae(manifest["model"]["vae"]["config"]) if "vae" in manifest["model"] else None
    else:
        loaded = load(ModelSource(model=source, size=meta.get("model_size"), vae=meta.get("vae")))
        model, vae = loaded.dit, loaded.vae
    if weights_hash(model) != manifest["model"]["weights_hash"]:
        raise BundleError(f"the torch backend needs the bundle's model; {source} has other weights")
    plan = Plan.from_dict(manifest["plan"])
    cache_dtype = getattr(torch, manifest.get("precision", {}).get("cache_dtype", "float32"))
    return graph_modules(model, plan, MethodTable.of(plan), vae, cache_dtype)


@register_backend("torch")
class TorchBackend(Backend):
    fmt = "torch"

    def __init__(self, bundle: Bundle, threads: int | None = None):
        super().__init__(bundle, threads)
        if threads:
            torch.set_num_threads(threads)
        self.graphs = eager_graphs(bundle.manifest)

    def input_names(self, method: str) -> list[str]:
        return self.graphs[method].input_names

    def output_names(self, method: str) -> list[str]:
        return self.graphs[method].output_names

    def run(self, method: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            outs = self.graphs[method](*[torch.from_numpy(np.require(a, requirements=("C", "W"))) for a in inputs])
        return [o.numpy() for o in (outs if isinstance(outs, tuple) else (outs,))]

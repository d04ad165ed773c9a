"""Weight and compute precision of a bundle: what each format does for it, the dtype of the
cache slots, and the golden gate's floor.

Every format is checked against the eager fp32 plan executor (the golden vectors), so a
reduced-precision bundle is held to a floor measured for it: the PSNR of the sample after every
step and of the final image against fp32. The floors below sit under what the default model's
bundles reach (``docs/precision.md`` has the measured figures) with a margin for other models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .formats import ExportError


@dataclass(frozen=True)
class Precision:
    name: str
    floor_db: float  # the golden gate's floor against eager fp32
    cache_dtype: str  # numpy name of the cache slots' dtype
    formats: dict[str, str]  # how each format realises it (recorded in the manifest)

    @property
    def cache_torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.cache_dtype)

    def record(self, formats: tuple[str, ...]) -> dict:
        return {
            "name": self.name,
            "cache_dtype": self.cache_dtype,
            "floor_db": self.floor_db,
            "formats": {f: self.formats[f] for f in formats if f in self.formats},
        }


PRECISIONS = {
    "fp32": Precision(
        "fp32",
        40.0,
        "float32",
        {
            "executorch": "fp32 weights and compute (XNNPACK)",
            "onnx": "fp32 weights and compute",
            "coreml": "fp32 weights and compute",
        },
    ),
    "fp16": Precision(
        "fp16",
        25.0,  # CPUs with fp16 arithmetic (ARMv8.2, x86 AVX512-FP16) accumulate in fp16: see docs/precision.md
        "float16",
        {
            "executorch": "fp16 weights and compute (XNNPACK); the sample and the DDIM update in fp32",
            "onnx": "fp16 weights widened to fp32 per call (onnxruntime's CPU kernels compute in fp32); "
            "fp16 cache tensors",
            "coreml": "fp16 weights and compute",
        },
    ),
    "int8": Precision(
        "int8",
        25.0,
        "float32",
        {
            "executorch": "XNNPACK quantizer: per-channel symmetric int8 weights of every linear, "
            "int8 activations quantized per call; the rest fp32",
            "onnx": "onnxruntime quantize_dynamic: per-channel int8 weights of every MatMul/Gemm, "
            "activations quantized per call; the rest fp32",
            "coreml": "coremltools linear_quantize_weights: per-channel symmetric int8 weights, fp16 compute",
        },
    ),
}


def precision(name: str) -> Precision:
    if name not in PRECISIONS:
        raise ExportError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
    return PRECISIONS[name]

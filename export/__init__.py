"""Skip plan -> per-step static graphs -> bundle (ExecuTorch, Core ML, ONNX + manifest).

Importing this package registers the eager reference backend (``torch``) with the runtime."""

from . import reference as reference

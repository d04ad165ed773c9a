"""Skip plan -> per-step static graphs -> bundle (ExecuTorch, Core ML, ONNX + manifest)."""

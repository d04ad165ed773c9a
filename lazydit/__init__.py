"""lazydit: lazy learning for Diffusion Transformers, exported for phones."""

__version__ = "0.1.0"

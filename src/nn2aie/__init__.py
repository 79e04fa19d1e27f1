"""nn2aie: quantized neural networks to AMD AIE-ML firmware, bit-exact."""

__version__ = "0.1.0"

__all__ = ["__version__", "from_pytorch"]


def __getattr__(name: str):
    # lazy: `import nn2aie` must not import torch (or onnx); from_pytorch imports it when first used
    if name == "from_pytorch":
        from nn2aie.frontends.pytorch import from_pytorch

        return from_pytorch
    raise AttributeError(f"module 'nn2aie' has no attribute {name!r}")

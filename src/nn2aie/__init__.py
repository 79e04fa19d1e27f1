"""nn2aie: quantized neural networks to AMD AIE-ML firmware, bit-exact."""

__version__ = "0.1.0"

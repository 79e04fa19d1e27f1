"""The matmul family: products of two activations, batched over leading axes (docs/ops.md ``matmul``)."""

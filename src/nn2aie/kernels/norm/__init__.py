"""The norm family: LayerNorm and RMSNorm over the last axis (docs/ops.md ``layernorm``; docs/numerics.md)."""

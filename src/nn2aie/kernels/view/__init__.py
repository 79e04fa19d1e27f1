"""The view op family (docs/ops.md): logical semantics, and the tile kernel behind the common interface."""

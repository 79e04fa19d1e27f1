"""The softmax family (docs/ops.md ``softmax``; docs/numerics.md, "Softmax")."""

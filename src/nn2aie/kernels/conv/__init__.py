"""The conv family: 1-D and 2-D convolutions on channels-last activations (docs/ops.md)."""

"""Typed errors. Every error names what it is about, why it failed and what the user can do.

The CLI prints ``str(error)`` as one paragraph and exits with code 2; nothing else reaches the user.
"""

from __future__ import annotations


class Nn2aieError(Exception):
    """Base class: ``where`` (node/tensor/layer/file), ``reason``, ``hint``."""

    kind = "error"

    def __init__(self, where: str, reason: str, hint: str = ""):
        self.where = where
        self.reason = reason
        self.hint = hint
        super().__init__(self.message())

    def message(self) -> str:
        text = f"{self.kind} at {self.where}: {self.reason}"
        if self.hint:
            text += f" — {self.hint}"
        return text


class UnsupportedOpError(Nn2aieError):
    kind = "unsupported operation"


class UnsupportedQuantizationError(Nn2aieError):
    kind = "unsupported quantization"


class DoesNotFitError(Nn2aieError):
    kind = "design does not fit"


class IllegalConfigError(Nn2aieError):
    kind = "illegal configuration"


class BadFileError(Nn2aieError):
    kind = "bad input file"


class InternalCheckError(Nn2aieError):
    """An IR or plan invariant failed: a bug in nn2aie, not in the user's model."""

    kind = "internal check failed"


class MissingToolError(Nn2aieError):
    """An external program nn2aie needs for an optional step (e.g. a C++ compiler) is not installed."""

    kind = "missing tool"


class PrecisionWarning(UserWarning):
    """A configuration nn2aie follows as given although it is not bit-exact to the source model's quantizers (the
    message names the layer and the configuration that is)."""

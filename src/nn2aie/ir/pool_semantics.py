"""Pooling semantics of the IR's ``pool`` op: the contract the frontends read into and the conv family's pooling
kernels (kernels/conv/) implement, channels last like the convolution (``ir/conv_semantics.py``).

An event is ``[*spatial, C]``; each output position ``o`` reduces the window ``o * stride + k * dilation`` (``k``
over the kernel) of the input padded by ``pads_begin`` / ``pads_end``, per channel:

- ``max``: the largest code among the window's *real* elements (padding never wins: ONNX MaxPool pads with -inf);
- ``sum`` (the exact numerator of an average): the sum of the real elements' codes; ``count`` is the divisor the
  source uses: every kernel position (``count_include_pad=1``, padding counted as zeros) or only the real ones
  (``count_include_pad=0``, ONNX's default), so ``average = sum / count`` exactly before the output's rounding.

Output sizes follow ONNX: ``floor`` (or ``ceil`` with ``ceil_mode``) of ``(in + pb + pe - dilation * (k - 1) - 1) /
stride + 1``; with ``ceil_mode`` a last window that would start in the end padding is dropped, as ONNX and torch do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PoolGeometry:
    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    dilations: tuple[int, ...] = ()
    ceil_mode: bool = False

    def __post_init__(self) -> None:
        if not self.dilations:
            object.__setattr__(self, "dilations", (1,) * len(self.spatial))

    def problem(self) -> str | None:
        n = len(self.spatial)
        if n not in (1, 2):
            return f"{n} spatial axes (1-D and 2-D pooling are supported)"
        if any(len(v) != n for v in (self.kernel, self.strides, self.pads_begin, self.pads_end, self.dilations)):
            return "kernel, strides, pads and dilations need one entry per spatial axis"
        if min(self.kernel + self.strides + self.dilations) < 1 or min(self.spatial) < 1:
            return "sizes, kernel, strides and dilations must be positive"
        if min(self.pads_begin + self.pads_end) < 0:
            return "negative padding"
        for k, pb, pe in zip(self.kernel, self.pads_begin, self.pads_end, strict=True):
            if pb >= k or pe >= k:
                return f"padding {pb}/{pe} not smaller than the kernel {k}"
        if min(self.out_spatial, default=0) < 1:
            return "the window is larger than the padded input"
        for axis, (i, k, st, d, pb, o) in enumerate(zip(self.spatial, self.kernel, self.strides, self.dilations,
                                                         self.pads_begin, self.out_spatial, strict=True)):
            for pos in range(o):  # a window of padding only has no maximum (ONNX: -inf) and no average
                if not any(0 <= pos * st - pb + t * d < i for t in range(k)):
                    return f"output position {pos} of axis {axis} has a window of padding only"
        return None

    @property
    def out_spatial(self) -> tuple[int, ...]:
        out = []
        for i, k, s, d, pb, pe in zip(self.spatial, self.kernel, self.strides, self.dilations, self.pads_begin,
                                      self.pads_end, strict=True):
            span = i + pb + pe - d * (k - 1) - 1
            o = (math.ceil(span / s) if self.ceil_mode else span // s) + 1
            if self.ceil_mode and (o - 1) * s >= i + pb:  # the last window would start in the end padding
                o -= 1
            out.append(o)
        return tuple(out)


def _windows(x: np.ndarray, geo: PoolGeometry, fill: int):
    """Per kernel tap: the strided view of the padded input (``fill`` in padding and past the end) and a mask of
    real elements."""
    out = geo.out_spatial
    extra = [max(0, (o - 1) * s + (k - 1) * d + 1 - (i + pb + pe)) for o, s, k, d, i, pb, pe in zip(
        out, geo.strides, geo.kernel, geo.dilations, geo.spatial, geo.pads_begin, geo.pads_end, strict=True)]
    pad = [(0, 0)] + [(pb, pe + e) for pb, pe, e in zip(geo.pads_begin, geo.pads_end, extra, strict=True)] + [(0, 0)]
    xp = np.pad(x, pad, constant_values=fill)
    real = np.pad(np.ones(x.shape[1:-1], dtype=bool), pad[1:-1], constant_values=False)
    for offset in np.ndindex(*geo.kernel):
        index = tuple(slice(o * d, o * d + (size - 1) * s + 1, s) for o, d, size, s in zip(
            offset, geo.dilations, out, geo.strides, strict=True))
        yield xp[(slice(None), *index, slice(None))], real[index]


def exact_max(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """[events, *spatial, C] codes -> [events, *out, C]: the largest real code of each window."""
    why = geo.problem()
    if why is not None:
        raise ValueError(why)
    x = np.asarray(x, dtype=np.int64)
    low = np.iinfo(np.int64).min
    out = np.full((x.shape[0], *geo.out_spatial, x.shape[-1]), low, dtype=np.int64)
    for patch, real in _windows(x, geo, low):
        out = np.maximum(out, np.where(real[None, ..., None], patch, low))
    return out


def exact_sum(x: np.ndarray, geo: PoolGeometry, count_include_pad: bool) -> tuple[np.ndarray, np.ndarray]:
    """The window sums of the real codes [events, *out, C] and the source's divisor per output position
    [*out] (kernel size, or the number of real elements without ``count_include_pad``)."""
    why = geo.problem()
    if why is not None:
        raise ValueError(why)
    x = np.asarray(x, dtype=np.int64)
    total = np.zeros((x.shape[0], *geo.out_spatial, x.shape[-1]), dtype=np.int64)
    count = np.zeros(geo.out_spatial, dtype=np.int64)
    inside = np.zeros(geo.out_spatial, dtype=np.int64)
    for patch, real in _windows(x, geo, 0):
        total += patch
        inside += real
        count += 1
    if not count_include_pad:
        return total, inside
    # positions past the end padding (ceil_mode) are not counted even with count_include_pad, as ONNX does
    in_pad = np.zeros(geo.out_spatial, dtype=np.int64)
    for offset in np.ndindex(*geo.kernel):
        pos = np.ones(geo.out_spatial, dtype=bool)
        for axis, (o_k, d, s, i, pb, pe) in enumerate(zip(offset, geo.dilations, geo.strides, geo.spatial,
                                                          geo.pads_begin, geo.pads_end, strict=True)):
            start = np.arange(geo.out_spatial[axis]) * s + o_k * d
            ok = start < i + pb + pe
            shape = [1] * len(geo.out_spatial)
            shape[axis] = -1
            pos = pos & ok.reshape(shape)
        in_pad += pos
    return total, in_pad

"""A layer's epilogue read off the source framework itself: the output code of every reachable accumulator value.

When float operations sit between a layer's integer sum and its output quantizer (BatchNormalization, FINN's
``Mul``/``Add`` by per-channel constants, a ReLU among them, a ``BipolarQuant`` at the end), the map from the
accumulator to the output code is whatever the source computes in float32. Rather than re-deriving that arithmetic,
nn2aie runs the source's own nodes on accumulator values (qonnx ``execute_onnx``: onnxruntime for standard nodes,
qonnx's own Quant / BipolarQuant) and records, per output channel, the thresholds of the resulting step function:
``t_k`` = the smallest accumulator whose code is at least ``k``. Exact by construction, like a lookup table
computed by running the source's op on every input code.

Every node admitted on such a chain is monotone in its input per channel (float32 rounding is monotone), so the
composition is monotone per channel: non-decreasing, or non-increasing when the channel's scale is negative (then
the tile accumulates the negated column and the thresholds are of ``acc' = -acc``). With a small accumulator range
every value is evaluated (and monotonicity is checked); with a large one the thresholds are found by bisection.
The range the table covers is widened to hold both orientations; beyond a channel's own reach its thresholds
follow the source's function (its natural extension), which keeps an affine map of the whole range possible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from nn2aie.errors import UnsupportedQuantizationError

FULL_TABLE_VALUES = 1 << 22  # accumulator values x channels evaluated in one go; above it: bisection
CodeFn = Callable[[np.ndarray], np.ndarray]  # float64 accumulators [R, N] -> integer codes [R, N]


def chain_function(nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray], input_name: str,
                   opsets: list[onnx.OperatorSetIdProto], to_input: Callable[[np.ndarray], np.ndarray],
                   to_code: Callable[[np.ndarray], np.ndarray], runner: str = "qonnx",
                   out_type: int = onnx.TensorProto.FLOAT, trailing: int = 0) -> CodeFn:
    """The codes the source computes for accumulators: ``to_input`` turns accumulators [R, N] into the float32 the
    first node reads (the layer's float sum), the nodes run under the source's runtime (``runner``: qonnx's
    ``execute_onnx`` for QONNX, an onnxruntime session for ONNX QDQ; ``out_type`` the last node's element type),
    ``to_code`` turns the last node's output into codes. ``trailing``: the sum is channels-first with that many
    spatial axes (a conv's NCHW sum): it runs as ``[R, N, 1, ...]``, so per-channel constants broadcast as in the
    source."""
    needed = {i for n in nodes for i in n.input if i and i in consts}
    out_name = nodes[-1].output[0]

    def model_of(shape: list[int]) -> onnx.ModelProto:
        graph = helper.make_graph(
            list(nodes), "epilogue",
            [helper.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info(out_name, out_type, shape)],
            [numpy_helper.from_array(np.asarray(consts[i]), i) for i in sorted(needed)],
            value_info=[helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, shape)
                        for n in nodes[:-1]])  # every node is elementwise on the [R, N] sum
        return helper.make_model(graph, opset_imports=list(opsets))

    def run(acc: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(to_input(acc), dtype=np.float32)
        if trailing:
            flat = x.shape
            x = x.reshape(*flat, *([1] * trailing))
            y = run_shaped(x)
            return y.reshape(flat)
        return run_shaped(x)

    def run_shaped(x: np.ndarray) -> np.ndarray:
        if runner == "onnxruntime":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the QDQ reference's setting
            session = ort.InferenceSession(model_of(list(x.shape)).SerializeToString(), opts,
                                           providers=["CPUExecutionProvider"])
            return to_code(np.asarray(session.run([out_name], {input_name: x})[0]))
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx

        y = execute_onnx(ModelWrapper(model_of(list(x.shape))), {input_name: x})[out_name]
        return to_code(np.asarray(y))

    return run


def step_thresholds(fn: CodeFn, acc_lo: int, acc_hi: int, channels: int, lo: int, hi: int, where: str
                    ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Per channel the thresholds of ``fn`` on the accumulator range, oriented to be non-decreasing.

    Returns ``(thresholds [channels, hi - lo], negated [channels] bool, acc_lo', acc_hi')``: entry (n, k - lo - 1)
    is the smallest accumulator ``a`` in [acc_lo', acc_hi' + 1] with code >= k (``acc_hi' + 1``: none), where the
    accumulator of a negated channel is ``-acc`` and the range is widened to cover both orientations."""
    wide = (min(acc_lo, -acc_hi), max(acc_hi, -acc_lo))  # symmetric: holds both orientations
    probe = np.array([[acc_lo] * channels, [acc_hi] * channels, [wide[0]] * channels, [wide[1]] * channels],
                     dtype=np.float64)
    ends = fn(probe)
    # falling channels accumulate -acc; a channel constant on its own range is oriented on the widened one, so
    # that every channel rises there (the function is monotone: its ends decide)
    negated = (ends[0] > ends[1]) | ((ends[0] == ends[1]) & (ends[2] > ends[3]))
    sign = np.where(negated, -1.0, 1.0)
    if negated.any():
        acc_lo, acc_hi = wide

    def oriented(acc: np.ndarray) -> np.ndarray:
        """Codes of oriented accumulators: the source's own function, also beyond a channel's reach on the
        widened range (never computed on the tile; the source's monotone nodes keep it monotone there)."""
        return fn(acc * sign[None, :])

    levels = np.arange(lo + 1, hi + 1)
    span = acc_hi - acc_lo + 1
    if span * channels <= FULL_TABLE_VALUES:
        acc = np.arange(acc_lo, acc_hi + 1, dtype=np.float64)[:, None]
        codes = oriented(acc)  # [span, channels], non-decreasing down each column
        if np.any(np.diff(codes, axis=0) < 0):
            col = int(np.nonzero(np.any(np.diff(codes, axis=0) < 0, axis=0))[0][0])
            raise UnsupportedQuantizationError(where, f"the source's output code is not monotone in the "
                                               f"accumulator (channel {col})", "report this model: the float "
                                               "operations before the quantizer should be monotone")
        if codes.min(initial=lo) < lo or codes.max(initial=hi) > hi:
            raise UnsupportedQuantizationError(where, f"the source's codes leave [{lo}, {hi}]", "report this model")
        t = acc_lo + np.stack([(codes < k).sum(axis=0) for k in levels], axis=1) if len(levels) else \
            np.zeros((channels, 0), dtype=np.int64)
        return t.astype(np.int64), negated, acc_lo, acc_hi
    # bisection, every (level, channel) at once: smallest a in [lo_b, hi_b) with fn(a) >= k, else acc_hi + 1
    low = np.full((len(levels), channels), acc_lo, dtype=np.int64)
    high = np.full((len(levels), channels), acc_hi + 1, dtype=np.int64)
    while np.any(low < high):
        mid = (low + high) // 2
        probe = np.minimum(mid, acc_hi)
        ok = oriented(probe.astype(np.float64)) >= levels[:, None]
        ok &= mid <= acc_hi
        high = np.where((low < high) & ok, mid, high)
        low = np.where((low < high) & ~ok, mid + 1, low)
    return low.T.astype(np.int64), negated, acc_lo, acc_hi

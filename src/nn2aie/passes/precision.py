"""Choose containers, accumulator, mmul shape and the SRS epilogue of every dense op.

The accumulator is chosen so that no partial sum can overflow: the bound
``K * max|x| * max|w| + max|bias|`` is computed from the types (not from data) and must stay below the
accumulator's positive range; otherwise the op is refused.
"""

from __future__ import annotations

from nn2aie.devices import Device
from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.ir.evaluate import accumulator_frac, bias_in_accumulator
from nn2aie.ir.execution import DenseExec
from nn2aie.ir.logical import Graph, Op
from nn2aie.ir.types import FixedType
from nn2aie.numerics import aie_rounding, aie_saturation

# Preferred aie::mmul shape per operand pair on AIE-ML (all native: one MAC instruction per mac()).
PREFERRED_MMUL = {
    ("int8", "int8"): ((4, 8, 8), "acc32"),
    ("int16", "int8"): ((4, 4, 8), "acc64"),
    ("int16", "int16"): ((4, 4, 4), "acc64"),
}
ACC_BITS = {"acc32": 32, "acc64": 64}
MAX_ACCUMULATOR_REGISTERS = 4  # of 9 x 1024-bit accumulator registers, leave room for the epilogue


def _bit_type(container: str) -> str:
    return container.removeprefix("u")


def _max_abs(t: FixedType) -> int:
    return max(abs(t.min_code), abs(t.max_code))


def plan_precision(graph: Graph, op: Op, device: Device, batch: int) -> DenseExec:
    x_t = graph.tensor(op.inputs[0])
    w_t = graph.tensor(op.inputs[1])
    y_t = graph.tensor(op.outputs[0])
    where = f"layer {op.name}"
    xt, wt, yt = x_t.type, w_t.type, y_t.type
    assert isinstance(xt, FixedType) and isinstance(wt, FixedType) and isinstance(yt, FixedType)

    for t, role in ((xt, "input"), (wt, "weights"), (yt, "output")):
        if t.container_bits not in (8, 16):
            raise UnsupportedQuantizationError(
                f"{where} {role} tensor {graph.tensor(op.inputs[0] if role == 'input' else op.outputs[0]).origin}",
                f"{t.width}-bit values need a {t.container_bits}-bit container; AIE-ML dense kernels take 8 or 16 bits",
                "quantize to at most 16 bits")
    if not wt.signed:
        raise UnsupportedQuantizationError(f"{where} weights", "unsigned weights are not supported",
                                           "use a signed weight quantizer")
    pair = (_bit_type(xt.container), _bit_type(wt.container))
    if pair not in PREFERRED_MMUL:
        raise UnsupportedQuantizationError(
            where, f"operand pair {xt.container} x {wt.container} has no dense kernel",
            "use int8 x int8, int16 x int8 or int16 x int16 (activations x weights)")
    mmul, acc = PREFERRED_MMUL[pair]
    device.mmul_shapes(*pair)  # refuses pairs the device generation lacks

    k, n = w_t.shape
    bias = bias_in_accumulator(graph, op)
    bias_max = int(abs(bias).max(initial=0)) if bias is not None else 0
    bound = k * _max_abs(xt) * _max_abs(wt) + bias_max
    if bound >= 2 ** min(ACC_BITS[acc] - 1, 53):  # 2**53: the emulator's float64 sums stay exact
        raise UnsupportedQuantizationError(
            where, f"the accumulator could overflow: |sum| may reach {bound} >= 2^{ACC_BITS[acc] - 1} ({acc})",
            "use narrower weights/activations or split the layer")
    if bias is not None and bias_max >= 2**31:
        raise UnsupportedQuantizationError(
            f"{where} bias", "bias at the accumulator's scale needs more than 32 bits",
            "quantize the bias to 32 bits at scale = input scale x weight scale")

    shift = accumulator_frac(graph, op) - yt.frac
    if shift < 0:
        raise UnsupportedQuantizationError(
            f"{where} output {y_t.origin or y_t.name}",
            f"output scale 2^-{yt.frac} is finer than the accumulator scale 2^-{accumulator_frac(graph, op)}: "
            "needs a left shift, not supported yet", "use a coarser output quantizer (fewer fractional bits)")
    if shift > 59:
        raise UnsupportedQuantizationError(where, f"SRS shift {shift} exceeds the AIE-ML range (<= 59)",
                                           "check the scales of input, weights and output")

    saturation = aie_saturation(yt.overflow, f"{where} output")
    if yt.overflow == "WRAP" and (yt.width != yt.container_bits or yt.narrow):
        raise UnsupportedQuantizationError(
            f"{where} output", f"wrap-around into {yt.width} bits inside a {yt.container_bits}-bit container",
            "use a saturating overflow mode or a full 8/16-bit width")
    lo, hi = yt.min_code, yt.max_code
    if yt.overflow == "SAT_SYM" and yt.signed:
        lo = -hi
    relu = op.attrs.get("activation") == "relu"
    if relu:
        lo = max(lo, 0)

    nacc = 1
    for cand in (4, 2, 1):
        regs = cand * (ACC_BITS[acc] * mmul[0] * mmul[2]) // 1024
        if regs <= MAX_ACCUMULATOR_REGISTERS:
            nacc = cand
            break
    return DenseExec(
        op=op.name, k=k, n=n, batch=batch, a_dtype=xt.container, w_dtype=wt.container, out_dtype=yt.container,
        acc=acc, mmul=mmul, shift=shift, rounding=aie_rounding(yt.rounding), saturation=saturation,
        clamp_lo=lo, clamp_hi=hi, relu=relu, has_bias=bias is not None, acc_bound=bound, n_accumulators=nacc,
    )

"""One dense tile: weight packing, and cascade chains computing exactly what one tile computes."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nn2aie.ir.execution import DenseExec
from nn2aie.kernels.dense import semantics as dense
from nn2aie.numerics import shift_round


def make_exec(k_slice, n_slice, nacc=2, batch=8, shift=6, lo=-128, hi=127, acc_bound=None):
    if acc_bound is None:
        acc_bound = k_slice * 128 * 128 + 2**20
    return DenseExec(op="d", k=k_slice, n=n_slice, batch=batch, a_dtype="int8", w_dtype="int8", out_dtype="int8",
                     acc="acc32", mmul=(4, 8, 8), shift=shift, rounding="conv_even", saturation="saturate",
                     clamp_lo=lo, clamp_hi=hi, relu=lo == 0, has_bias=True, acc_bound=acc_bound, k_slice=k_slice,
                     n_slice=n_slice, n_accumulators=nacc)


def test_pack_unpack_roundtrip_and_load_order():
    e = make_exec(16, 32, nacc=2)
    w = np.arange(16 * 32).reshape(16, 32)
    packed = dense.pack_weights(e, w)
    assert np.array_equal(dense.unpack_weights(e, packed), w)
    # first block loaded: k rows 0..7, n columns 0..7 (group 0, k_blk 0, j 0), row-major
    assert packed[:64].tolist() == w[:8, :8].ravel().tolist()
    # second block: same k_blk, j = 1 -> columns 8..15
    assert packed[64:128].tolist() == w[:8, 8:16].ravel().tolist()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(0, 10), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_cascade_chain_equals_single_tile(kb, nb, parts, shift, relu, seed):
    rng = np.random.default_rng(seed)
    batch, k, n = 4, 8 * kb * parts, 8 * nb
    x = rng.integers(-128, 128, size=(3, batch, k))
    w = rng.integers(-128, 128, size=(k, n))
    b = rng.integers(-(2**20), 2**20, size=n)
    lo = 0 if relu else -128
    # reference: plain integer arithmetic
    acc = np.einsum("ibk,kn->ibn", x, w) + b
    want = np.clip(shift_round(acc, shift, "conv_even"), -128, 127)
    want = np.maximum(want, lo)

    single = make_exec(k, n, nacc=1, batch=batch, shift=shift, lo=lo)
    a_win = dense.input_layout(single).to_blocks(x)
    out = dense.run_tile(single, "single", a_win, dense.pack_weights(single, w), b.astype(np.int32), None)
    assert np.array_equal(dense.output_layout(single).from_blocks(out), want)

    if parts > 1:
        e = make_exec(k // parts, n, nacc=1, batch=batch, shift=shift, lo=lo, acc_bound=k * 128 * 128 + 2**20)
        cascade = None
        for p in range(parts):
            role = "first" if p == 0 else ("last" if p == parts - 1 else "middle")
            ks = slice(p * e.k_slice, (p + 1) * e.k_slice)
            win = dense.input_layout(e).to_blocks(x[:, :, ks])
            cascade = dense.run_tile(e, role, win, dense.pack_weights(e, w[ks]),
                                     b.astype(np.int32) if p == 0 else None, cascade)
        assert np.array_equal(dense.output_layout(e).from_blocks(cascade), want)

"""The requantisation epilogues of kernels/templates/nn2aie_requant.h compiled with g++ against the AIE-API
emulation headers (kernels/requant_native.py): on every accumulator of each range and every channel, the native
codes equal ``Requant.apply`` and the Fraction oracle of test_requant.py, for multipliers and tables, acc32 and
acc64 accumulators, per-lane and per-channel-row constants. One driver binary per session; each hypothesis
example is one batched native run."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernels.test_requant import cases, oracle

from nn2aie.errors import MissingToolError
from nn2aie.kernels.requant import AffineMap, Requant, choose_requant
from nn2aie.kernels.requant_native import (
    BLOCK,
    LANES,
    NativeCase,
    block_lanes,
    code_type,
    compile_driver,
    exhaustive_codes,
    lane_constants,
    run_cases,
)

INT32_MAX = (1 << 31) - 1


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private binary cache with the driver compiled (skipped without a C++ compiler)."""
    d = tmp_path_factory.mktemp("requant-native")
    try:
        compile_driver(cache_dir=d)
    except MissingToolError as exc:
        pytest.skip(f"no C++ compiler: {exc}")
    return d


def _grid(rq: Requant) -> np.ndarray:
    accs = np.arange(rq.acc_lo, rq.acc_hi + 1, dtype=np.int64)
    return np.repeat(accs[:, None], rq.channels, axis=1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(cases(), min_size=1, max_size=6), st.data())
def test_native_equals_apply_and_oracle_on_every_accumulator(cache, batch, data):
    requants, wants = [], []
    for scale, offset, mode, lo, hi, a_lo, a_hi in batch:
        src = AffineMap.from_scales(scale, offset, mode, lo, hi)
        want = oracle(scale, offset, mode, lo, hi, range(a_lo, a_hi + 1))
        for kinds in (("multiplier", "table"), ("table",)):
            requants.append(choose_requant(src, a_lo, a_hi, kinds=kinds))
            wants.append(want)
    tags = [data.draw(st.sampled_from(["acc32", "acc64"])) for _ in requants]
    layouts = [data.draw(st.sampled_from(["rows", "lanes"])) for _ in requants]
    grids = exhaustive_codes(requants, acc_tags=tags, layouts=layouts, cache_dir=cache)
    for rq, want, got, tag, layout in zip(requants, wants, grids, tags, layouts, strict=True):
        assert np.array_equal(rq.apply(_grid(rq)), want), rq.reason
        assert np.array_equal(got, want), (rq.kind, tag, layout, rq.reason)


def test_every_lane_on_its_own_channel(cache):
    """Per-lane constants with an arbitrary lane -> channel map and random accumulators on every lane."""
    rng = np.random.default_rng(3)
    sw = rng.uniform(0.002, 0.02, 6).astype(np.float32)
    scale = [Fraction(float(np.float32(0.011))) * Fraction(float(w)) / Fraction(float(np.float32(0.09))) for w in sw]
    offset = [Fraction(int(b), 7) for b in rng.integers(-900, 900, 6)]
    src = AffineMap.from_scales(scale, offset, "symmetric_inf", -128, 127)
    lanes = tuple(int(c) for c in rng.integers(0, 6, LANES))
    cases_, wants = [], []
    for kinds in (("multiplier",), ("table",)):
        rq = choose_requant(src, -40000, 40000, kinds=kinds)
        acc = rng.integers(-40000, 40001, size=(200, LANES))
        ch = np.asarray(lanes)
        want = oracle(scale, offset, "symmetric_inf", -128, 127, acc.ravel().tolist()).reshape(200, LANES, 6)
        wants.append(np.take_along_axis(want, np.broadcast_to(ch[None, :, None], (200, LANES, 1)), 2)[..., 0])
        cases_.append(NativeCase(rq, lanes, acc, "acc64" if kinds == ("table",) else "acc32"))
    for got, want in zip(run_cases(cases_, cache_dir=cache), wants, strict=True):
        assert np.array_equal(got, want)


def test_accumulators_at_the_ends_of_int32(cache):
    """Ranges that end at the int32 minimum / maximum: the multiplier product near 2**62, and a table whose
    padding (acc_hi + 1 = 2**31 in Requant.table_levels) is no int32."""
    top = [Fraction(1, 3), Fraction(1, 50)], [Fraction(-(2**31), 3), Fraction(-(2**31), 50)]
    bottom = [Fraction(1, 3), Fraction(1, 50)], [Fraction(2**31, 3), Fraction(2**31, 50)]
    requants, wants = [], []
    for (scale, offset), (a_lo, a_hi) in ((top, (INT32_MAX - 300, INT32_MAX)), (bottom, (-(2**31), -(2**31) + 300))):
        for mode in ("floor", "conv_even", "symmetric_zero"):
            src = AffineMap.from_scales(scale, offset, mode, -128, 127)
            want = oracle(scale, offset, mode, -128, 127, range(a_lo, a_hi + 1))
            for kinds in (("multiplier", "table"), ("table",)):
                requants.append(choose_requant(src, a_lo, a_hi, kinds=kinds))
                wants.append(want)
    assert any(rq.kind == "table" and max(max(lv) for lv in rq.table_levels()[1]) > INT32_MAX for rq in requants)
    for tag in ("acc32", "acc64"):
        grids = exhaustive_codes(requants, acc_tags=[tag] * len(requants), cache_dir=cache)
        for rq, got, want in zip(requants, grids, wants, strict=True):
            assert np.array_equal(got, want), (tag, rq.kind, rq.acc_lo)


def test_many_channels_and_16_bit_codes(cache):
    """More channels than a block row (several column groups) and int16 / uint8 / int4 clamps."""
    rng = np.random.default_rng(11)
    for lo, hi, mode in ((-32768, 32767, "conv_odd"), (0, 255, "ceil"), (-8, 7, "negative_inf")):
        scale = [Fraction(int(m), 1 << 20) for m in rng.integers(1 << 18, 1 << 21, 19)]
        offset = [Fraction(int(b), 3) for b in rng.integers(-50, 50, 19)]
        src = AffineMap.from_scales(scale, offset, mode, lo, hi)
        rqs = [choose_requant(src, -1500, 1500, kinds=k) for k in (("multiplier",), ("table",))]
        want = oracle(scale, offset, mode, lo, hi, range(-1500, 1501))
        for rq, got in zip(rqs, exhaustive_codes(rqs, cache_dir=cache), strict=True):
            assert np.array_equal(got, want), (lo, hi, rq.kind)


def test_a_wrong_constant_is_caught(cache):
    """The comparison can fail: a multiplier one off, or a threshold moved by one, gives different codes natively
    (and the native codes follow the altered constants, as Requant.apply does)."""
    src = AffineMap.from_scales([Fraction(2, 3)], [Fraction(1, 2)], "conv_even", -128, 127)
    good = choose_requant(src, 1, 150)
    assert good.kind == "multiplier"
    bad_m = Requant(**{**good.__dict__, "multipliers": (good.multipliers[0] + 1,)})
    table = choose_requant(src, -150, 150, kinds=("table",))
    rows = list(map(list, table.thresholds))
    j = next(i for i, t in enumerate(rows[0]) if -150 < t < 151)
    rows[0][j] += 1
    bad_t = Requant(**{**table.__dict__, "thresholds": tuple(map(tuple, rows))})
    want_m = oracle([Fraction(2, 3)], [Fraction(1, 2)], "conv_even", -128, 127, range(1, 151))
    want_t = oracle([Fraction(2, 3)], [Fraction(1, 2)], "conv_even", -128, 127, range(-150, 151))
    got = exhaustive_codes([good, bad_m, table, bad_t], cache_dir=cache)
    assert np.array_equal(got[0], want_m) and np.array_equal(got[2], want_t)
    assert not np.array_equal(got[1], want_m) and not np.array_equal(got[3], want_t)
    assert np.array_equal(got[1], bad_m.apply(_grid(bad_m))) and np.array_equal(got[3], bad_t.apply(_grid(bad_t)))


def test_lane_constants_of_a_block():
    rq = Requant("multiplier", "floor", -128, 127, -10, 10, shift=20, multipliers=(11, 22, 33), offsets=(-1, 0, 5),
                 channels=3)
    lanes = block_lanes([2, 0, 1, 2, 0, 1, 2, 0], BLOCK[0])
    assert len(lanes) == LANES and lanes[8:16] == (2, 0, 1, 2, 0, 1, 2, 0)
    c = lane_constants(rq, lanes)
    assert c.multipliers.dtype == np.int32 and list(c.multipliers[:4]) == [33, 11, 22, 33]
    assert list(c.offsets[8:11]) == [5, -1, 0]
    table = Requant("table", "floor", 0, 3, 0, 9, thresholds=((0, 4, 10), (2, 3, 8)), channels=2)
    t = lane_constants(table, [1, 0, 1])
    # channel 0: threshold 0 always counts (base 1), 10 never (dropped); channel 1: 2, 3, 8 decide
    assert list(t.base) == [0, 1, 0]
    assert t.levels.tolist() == [[2, 4, 2], [3, 10, 3], [8, 10, 8]]
    with pytest.raises(ValueError, match="index the 2 channel"):
        lane_constants(table, [2])
    assert code_type(-8, 7) == "int8" and code_type(0, 255) == "uint8" and code_type(-129, 0) == "int16"


def test_missing_compiler_is_a_typed_error(monkeypatch, tmp_path):
    monkeypatch.setenv("NN2AIE_CXX", "no-such-compiler-nn2aie")
    with pytest.raises(MissingToolError, match="no-such-compiler-nn2aie"):
        compile_driver(cache_dir=tmp_path)

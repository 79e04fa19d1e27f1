"""Exact requantisation for any scale: integer accumulator -> output code, per output channel.

The source's map (``AffineMap``) is the exact real arithmetic of the quantized model on its own float32 scales:
``code = clamp(round(acc * c_n + e_n), lo, hi)`` with ``c_n`` and ``e_n`` exact rationals (every float32 is one)
and the source's rounding. It is monotone in ``acc`` (``c_n > 0``), so on an accumulator range it is fully
described by its thresholds ``t_k`` (the smallest accumulator whose code is at least ``k``), which are computed
exactly in integers. An implementation reproduces the map on the range exactly when its thresholds are equal,
which is how every candidate is verified (a proof over the whole range, not a sample):

- ``shift``: ``clamp(srs(acc, s))`` -- ``c_n = 2**-s`` on every channel and no offset (today's SRS epilogue);
- ``multiplier``: ``clamp(srs(acc * M_n + B_n, s))`` with an int32 ``M_n`` per channel, a 64-bit offset ``B_n``
  (``B'_n << offset_shift``, an int32 ``B'_n``) and one shift ``s`` for the layer (one SRS instruction);
- ``table``: ``lo + #{k : acc >= t_nk}`` -- the thresholds themselves, compared and counted on the tile, for
  maps no multiplier reproduces.

``choose_requant`` tries them in that order and records which it took and why; nothing is approximated. The
same step serves every family whose epilogue maps an exact integer to a code (dense, conv, pooling sums).
Where the source computes the accumulation in float32 (QDQ through onnxruntime, QONNX, Brevitas), its result
can differ from this exact map when the real value lies within float32 rounding of a tie; docs/numerics.md
states the algorithm and the measured mismatch rate.

Not a family: a shared building block, like ``epilogue.py``.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

from nn2aie.errors import UnsupportedQuantizationError
from nn2aie.numerics import AIE_ROUNDING_MODES, aie_rounding, div_round

MULTIPLIER_BITS = 31  # M_n < 2**31: an int32 operand of aie::mul (int32 x int32 -> acc64 on AIE-ML)
OFFSET_BITS = 31  # B'_n is an int32 vector, widened into acc64 lanes by from_vector(shift) (UPS)
ACC64_SAFE = 1 << 62  # |acc * M + B| stays below this: acc64 lanes hold +-2**63
INT32_RANGE = (-(1 << 31), (1 << 31) - 1)  # multiplier and table read the accumulator as an int32 vector
REQUANT_KINDS = ("shift", "multiplier", "table")  # cheapest first

# Cost per output vector of ``lanes`` lanes, in AIE-ML vector-unit cycles beyond the plain SRS epilogue (which the
# family's calibrated epilogue cost already counts). An instruction count, NOT calibrated: no public measurement
# of these epilogues exists. Assumptions (AM020 / UG1079 / AIE-API): 512-bit vector registers (16 int32 lanes per
# compare or add), 1024-bit acc64 registers of 16 lanes; an int32 x int32 element-wise multiply is emulated on
# AIE-ML as two 32 x 16 passes (MUL slot, 16 lanes each); one UPS (offset into acc64) and one SRS per 16 lanes; a
# table level is one compare (ge) and one masked add (select + add) per 16 lanes; one instruction per cycle per
# slot, the other slots' work (loads of the per-channel constants, stores) hidden.
LANES_PER_OP = 16
MULTIPLIER_PASSES = 2  # 32 x 32 -> acc64 as two 32 x 16 multiplies
OPS_PER_TABLE_LEVEL = 2  # compare + masked add
OPS_PER_CORRECTION = 6  # acc == a as (acc >= a) - (acc >= a + 1): two compares, two selects, add, subtract
MAX_CORRECTION_SLOTS = 8  # beyond this a table is as cheap


# The C++ of the multiplier / table epilogues (kernels/templates/nn2aie_requant.h), copied into a project beside the
# kernels of every family that requantises this way (one file, whichever family writes it)
REQUANT_HEADER = pathlib.Path(__file__).resolve().parent / "templates" / "nn2aie_requant.h"
REQUANT_HEADER_PATH = "kernels/nn2aie_requant.h"


def requant_header_file() -> dict[str, str]:
    """{project path: text} of the shared requantisation header."""
    return {REQUANT_HEADER_PATH: REQUANT_HEADER.read_text(encoding="utf-8")}

@dataclass(frozen=True)
class AffineMap:
    """``code_n(acc) = clamp(round((acc * P_n + E_n) / D_n), lo, hi)``: per channel ``n``, integers with
    ``P_n, D_n > 0``; ``rounding`` an AIE-ML rounding mode (the source's, through ``numerics.aie_rounding``)."""

    P: tuple[int, ...]
    E: tuple[int, ...]
    D: tuple[int, ...]
    rounding: str
    lo: int
    hi: int

    def __post_init__(self) -> None:
        if not (len(self.P) == len(self.E) == len(self.D)) or not self.P:
            raise ValueError("P, E and D need one entry per channel")
        if min(self.P) <= 0 or min(self.D) <= 0:
            raise ValueError("the accumulator scale must be positive (P, D > 0)")
        if self.rounding not in AIE_ROUNDING_MODES or self.lo > self.hi:
            raise ValueError(f"bad rounding {self.rounding!r} or range [{self.lo}, {self.hi}]")

    @classmethod
    def from_scales(cls, scale: Sequence[Fraction], offset: Sequence[Fraction], rounding: str, lo: int,
                    hi: int) -> AffineMap:
        """``code = clamp(round(acc * scale_n + offset_n))``, from exact rationals (e.g. ``Fraction(float32)``)."""
        if len(offset) == 1 and len(scale) > 1:
            offset = list(offset) * len(scale)
        if len(scale) == 1 and len(offset) > 1:
            scale = list(scale) * len(offset)
        P, E, D = [], [], []
        for c, e in zip(scale, offset, strict=True):
            c, e = Fraction(c), Fraction(e)
            if c <= 0:
                raise UnsupportedQuantizationError("requantisation", f"scale {float(c)!r} is not positive",
                                                   "use positive quantizer scales")
            d = math.lcm(c.denominator, e.denominator)
            P.append(c.numerator * (d // c.denominator))
            E.append(e.numerator * (d // e.denominator))
            D.append(d)
        return cls(tuple(P), tuple(E), tuple(D), rounding, lo, hi)

    @property
    def channels(self) -> int:
        return len(self.P)

    def scale(self, n: int) -> Fraction:
        return Fraction(self.P[n], self.D[n])

    def offset(self, n: int) -> Fraction:
        return Fraction(self.E[n], self.D[n])

    def evaluate(self, acc: np.ndarray) -> np.ndarray:
        """Codes of accumulator values ``acc`` ([..., channels] or [...] for one channel), exact (Python ints)."""
        a = _objects(acc)
        num = a * _objects(self.P) + _objects(self.E)
        return np.clip(div_round(num, _objects(self.D), self.rounding), self.lo, self.hi).astype(np.int64)

    def thresholds(self, acc_lo: int, acc_hi: int) -> np.ndarray:
        """[channels, hi - lo] int64: entry (n, k - lo - 1) is the smallest accumulator in [acc_lo, acc_hi + 1]
        whose code is >= k, for k = lo + 1 .. hi (acc_hi + 1: none in range; acc_lo: all of it)."""
        k = _objects(np.arange(self.lo + 1, self.hi + 1))[None, :]
        P, E, D = (_objects(v)[:, None] for v in (self.P, self.E, self.D))
        # code >= k  <=>  acc * P + E  >=  bound  (``inclusive``) or  >  bound, bound = beta * D with beta the
        # value where the rounding steps to k: work on twice the values so beta = k - 1/2 stays an integer
        twice_beta, inclusive = _step(k, self.rounding)
        num = twice_beta * D - 2 * E  # acc >= num / (2P)  or  acc > num / (2P)
        den = 2 * P
        floor = num // den
        exact = floor * den == num
        t = np.where(inclusive, np.where(exact, floor, floor + 1), floor + 1)
        return np.clip(t, acc_lo, acc_hi + 1).astype(np.int64)


def _objects(x) -> np.ndarray:
    """An object array of Python ints (exact arithmetic of any size)."""
    a = np.asarray(x)
    out = np.empty(a.size, dtype=object)
    out[:] = [int(v) for v in a.ravel()]
    return out.reshape(a.shape)


def _step(k: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(2 * beta_k, inclusive): rounding by ``mode`` gives a code >= k exactly when the value is >= beta_k
    (inclusive) or > beta_k, for integers k (shared/reference/aie-ml.md section 5)."""
    pos = k >= 1
    if mode == "floor":
        return 2 * k, np.ones(k.shape, bool)
    if mode == "ceil":
        return 2 * (k - 1), np.zeros(k.shape, bool)
    if mode == "symmetric_floor":  # toward zero
        return np.where(pos, 2 * k, 2 * (k - 1)), pos
    if mode == "symmetric_ceil":  # away from zero
        return np.where(pos, 2 * (k - 1), 2 * k), ~pos
    # nearest: beta = k - 1/2; the tie goes up to k when the mode rounds that tie up
    even = (k % 2) == 0
    inclusive = {"negative_inf": np.zeros(k.shape, bool), "positive_inf": np.ones(k.shape, bool),
                 "symmetric_zero": ~pos, "symmetric_inf": pos, "conv_even": even, "conv_odd": ~even}[mode]
    return 2 * k - 1, inclusive


@dataclass(frozen=True)
class Requant:
    """One chosen implementation of an ``AffineMap`` on an accumulator range (see the module docstring)."""

    kind: str  # "shift" | "multiplier" | "table"
    rounding: str  # AIE-ML rounding mode of the SRS (shift / multiplier)
    lo: int
    hi: int
    acc_lo: int
    acc_hi: int
    shift: int = 0
    multipliers: tuple[int, ...] = ()
    offsets: tuple[int, ...] = ()  # B'_n; the offset added is B'_n << offset_shift
    offset_shift: int = 0
    thresholds: tuple[tuple[int, ...], ...] = ()
    reason: str = ""
    channels: int = field(default=1)
    # multiplier: per channel, the accumulators where the source's code differs from the multiplier's, and by how
    # much (a source whose float32 rounding moved a few thresholds off every affine map); () = none
    corrections: tuple[tuple[tuple[int, int], ...], ...] = ()

    @property
    def correction_slots(self) -> int:
        return max((len(c) for c in self.corrections), default=0)

    def correction_planes(self) -> tuple[np.ndarray, np.ndarray]:
        """[slots, channels] accumulators and deltas; unused slots never match (acc_hi + 1, delta 0)."""
        slots = self.correction_slots
        acc = np.full((slots, self.channels), self.acc_hi + 1, dtype=np.int64)
        delta = np.zeros((slots, self.channels), dtype=np.int64)
        for n, row in enumerate(self.corrections):
            for j, (a, d) in enumerate(row):
                acc[j, n], delta[j, n] = a, d
        return acc, delta

    def apply(self, acc: np.ndarray) -> np.ndarray:
        """Codes the tile computes for exact accumulators ``acc`` ([..., channels]), int64."""
        acc64 = np.asarray(acc, dtype=np.int64)
        if self.kind == "table":
            t = np.asarray(self.thresholds, dtype=np.int64)  # [channels, levels]
            return (self.lo + (acc64[..., None] >= t).sum(axis=-1)).astype(np.int64)
        # inside the verified range |acc * M + B| < 2**62 (checked when chosen): int64 is exact, as on the tile
        inside = acc64.size == 0 or (int(acc64.min()) >= self.acc_lo and int(acc64.max()) <= self.acc_hi)
        a = acc64 if inside else _objects(acc64)
        if self.kind == "shift":
            num = a
        else:
            m = np.asarray(self.multipliers, dtype=np.int64) if inside else _objects(self.multipliers)
            b = np.asarray(self.offsets, dtype=np.int64) if inside else _objects(self.offsets)
            num = a * m + (b << (np.int64(self.offset_shift) if inside else self.offset_shift))
        if self.shift >= 0:
            y = div_round(num, (np.int64(1) << np.int64(self.shift)) if inside else 1 << self.shift, self.rounding)
        else:
            y = num << (np.int64(-self.shift) if inside else -self.shift)
        y = np.clip(y, self.lo, self.hi).astype(np.int64)
        if self.corrections:
            where, delta = self.correction_planes()
            for j in range(where.shape[0]):
                y = y + np.where(acc64 == where[j], delta[j], 0)
        return y

    def select(self, channels: Sequence[int]) -> Requant:
        """The same implementation on the given channels (in that order; repeats allowed)."""
        pick = (lambda v: tuple(v[c] for c in channels)) if self.channels > 1 else (lambda v: tuple(v) * len(
            channels))
        return replace(self, channels=len(channels),
                       multipliers=pick(self.multipliers) if self.multipliers else (),
                       offsets=pick(self.offsets) if self.offsets else (),
                       thresholds=pick(self.thresholds) if self.thresholds else (),
                       corrections=pick(self.corrections) if self.corrections else ())

    def table_levels(self) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
        """The table as the tile stores it: per channel a base code and the thresholds that can decide something
        on the range (a threshold at ``acc_lo`` always counts: folded into the base; one past ``acc_hi`` never
        does: dropped), padded to the longest channel with ``acc_hi + 1``. Returns (base[n], levels[j][n])."""
        if self.kind != "table":
            raise ValueError("only a table has levels")
        never = self.acc_hi + 1
        base, active = [], []
        for row in self.thresholds:
            base.append(self.lo + sum(1 for t in row if t <= self.acc_lo))
            active.append([t for t in row if self.acc_lo < t < never])
        width = max((len(a) for a in active), default=0)
        levels = tuple(tuple(a[j] if j < len(a) else never for a in active) for j in range(width))
        return tuple(base), levels

    def cycles_per_vector(self, lanes: int = 32) -> float:
        """Vector-unit cycles per output vector beyond the plain SRS epilogue (module constants: assumptions)."""
        ops = -(-lanes // LANES_PER_OP)
        if self.kind == "shift":
            return 0.0
        if self.kind == "multiplier":  # the multiply passes and the offset UPS (SRS counted); per correction slot
            # two compares, two selects, an add and a subtract, plus widening and narrowing the codes once
            fix = ops * (OPS_PER_CORRECTION * self.correction_slots + 2) if self.corrections else 0
            return float(ops * (MULTIPLIER_PASSES + 1) + fix)
        return float(ops * OPS_PER_TABLE_LEVEL * len(self.table_levels()[1]) + ops)  # + the int32 read

    def as_map(self) -> AffineMap:
        """The shift / multiplier implementation as an affine map (the form its verification compares)."""
        if self.kind == "table":
            raise ValueError("a table is its thresholds, not an affine map")
        m = self.multipliers or (1,) * self.channels
        b = self.offsets or (0,) * self.channels
        d = 1 << max(self.shift, 0)
        up = 1 << max(-self.shift, 0)
        return AffineMap(tuple(x * up for x in m), tuple((x << self.offset_shift) * up for x in b),
                         (d,) * len(m), self.rounding, self.lo, self.hi)

    def to_json(self) -> dict:
        out = {"kind": self.kind, "rounding": self.rounding, "clamp": [self.lo, self.hi],
               "accumulator_range": [self.acc_lo, self.acc_hi], "reason": self.reason}
        if self.kind in ("shift", "multiplier"):
            out["shift"] = self.shift
        if self.kind == "multiplier":
            out.update(multipliers=list(self.multipliers), offsets=list(self.offsets),
                       offset_shift=self.offset_shift)
            if self.corrections:
                out.update(corrections=sum(len(c) for c in self.corrections), correction_slots=self.correction_slots)
        if self.kind == "table":
            out["levels"] = len(self.table_levels()[1])
        out["cycles_per_32_lanes"] = self.cycles_per_vector(32)
        return out


def choose_requant(source: AffineMap, acc_lo: int, acc_hi: int, srs_shifts: tuple[int, int] = (-4, 59),
                   kinds: Sequence[str] = REQUANT_KINDS) -> Requant:
    """The cheapest implementation in ``kinds`` equal to ``source`` on every accumulator in [acc_lo, acc_hi]
    (thresholds compared exactly). ``srs_shifts``: the SRS shift range of the device."""
    if acc_lo > acc_hi:
        raise ValueError("empty accumulator range")
    want = source.thresholds(acc_lo, acc_hi)
    base = dict(rounding=source.rounding, lo=source.lo, hi=source.hi, acc_lo=acc_lo, acc_hi=acc_hi,
                channels=source.channels)
    misses: list[str] = []
    if "shift" in kinds:
        shift = _power_of_two_shift(source)
        if shift is None:
            misses.append("the scales are not one power of two with no offset")
        elif not srs_shifts[0] <= shift <= srs_shifts[1]:
            misses.append(f"the shift {shift} is outside the SRS range {srs_shifts}")
        else:
            rq = Requant("shift", shift=shift, reason=f"scale 2^{-shift} on every channel: one SRS", **base)
            if np.array_equal(rq.as_map().thresholds(acc_lo, acc_hi), want):
                return rq
            misses.append("shift candidate failed its verification")  # cannot happen for an exact power of two
    in_int32 = INT32_RANGE[0] <= acc_lo and acc_hi <= INT32_RANGE[1]
    if not in_int32:
        misses.append(f"the accumulator range [{acc_lo}, {acc_hi}] leaves int32 (multiplier and table read it as "
                      "an int32 vector)")
        kinds = [k for k in kinds if k == "shift"]
    if "multiplier" in kinds:
        rq, why = _multiplier(source, acc_lo, acc_hi, want, srs_shifts, base)
        if rq is not None:
            return rq
        # another affine map with the very same thresholds, away from ties, may leave an int32 multiplier room
        fitted = fit_affine(want, source.lo, source.hi, acc_lo, acc_hi, source.rounding)
        if fitted is not None:
            rq, _ = _multiplier(fitted, acc_lo, acc_hi, want, srs_shifts, base)
            if rq is not None:
                return replace(rq, reason=f"{rq.reason} (of an affine map with the source's thresholds: {why})")
        misses.append(why)
    if "table" in kinds:
        reason = "; ".join(misses) or "table requested"
        return Requant("table", thresholds=tuple(tuple(int(v) for v in row) for row in want),
                       reason=f"thresholds compared on the tile ({reason})", **base)
    raise UnsupportedQuantizationError("requantisation", "; ".join(misses) or "no implementation allowed",
                                       "allow a threshold table, use power-of-two scales, or narrower "
                                       "operands (a smaller accumulator range)")


def _power_of_two_shift(source: AffineMap) -> int | None:
    shifts = set()
    for n in range(source.channels):
        c = source.scale(n)
        if source.E[n] != 0 or c.numerator & (c.numerator - 1) or c.denominator & (c.denominator - 1):
            return None
        shifts.add(c.denominator.bit_length() - 1 - (c.numerator.bit_length() - 1))
    return shifts.pop() if len(shifts) == 1 else None


def _multiplier(source: AffineMap, acc_lo: int, acc_hi: int, want: np.ndarray, srs_shifts: tuple[int, int],
                base: dict) -> tuple[Requant | None, str]:
    """Per channel the first of M in {round(c 2^s), +-1} x B in {round(e 2^s), +-1 step} that verifies; one
    shift s for the layer: the largest keeping every M_n an int32 (most precise), within the SRS range."""
    A = max(abs(acc_lo), abs(acc_hi), 1)
    scales = [source.scale(n) for n in range(source.channels)]
    s = min(_largest_shift(c) for c in scales)
    s = min(s, srs_shifts[1])
    if s < max(srs_shifts[0], 0):
        return None, f"a scale of {float(max(scales)):.3g} needs a multiplier beyond int32 at shift >= 0"
    mults, offs, t = [], [], 0
    chosen: list[tuple[int, int]] = []
    for n, c in enumerate(scales):
        m0 = _round_half_up(c * (1 << s))
        b0 = _round_half_up(source.offset(n) * (1 << s))
        chosen.append((m0, b0))
    # one offset shift for the layer: the offsets' int32 parts times 2**t
    t = max(0, max(abs(b).bit_length() for _, b in chosen) - OFFSET_BITS + 1)
    step = 1 << t
    for n, (m0, b0) in enumerate(chosen):
        one = AffineMap((source.P[n],), (source.E[n],), (source.D[n],), source.rounding, source.lo, source.hi)
        target = want[n:n + 1]
        found = None
        for dm in (0, -1, 1):
            m = m0 + dm
            if not 0 < m < (1 << MULTIPLIER_BITS):
                continue
            for db in (0, -1, 1):
                b = _round_half_up(Fraction(b0, step)) + db
                if abs(b) >= 1 << (OFFSET_BITS - 1) or A * m + (abs(b) << t) >= ACC64_SAFE:
                    continue
                cand = AffineMap((m,), (b << t,), (1 << s,), source.rounding, source.lo, source.hi)
                if np.array_equal(cand.thresholds(acc_lo, acc_hi), target):
                    found = (m, b)
                    break
            if found:
                break
        if found is None:
            near = one.thresholds(acc_lo, acc_hi)[0]
            got = AffineMap((m0,), (_round_half_up(Fraction(b0, step)) << t,), (1 << s,), source.rounding,
                            source.lo, source.hi).thresholds(acc_lo, acc_hi)[0]
            bad = int(np.flatnonzero(near != got)[0]) if np.any(near != got) else 0
            return None, (f"no int32 multiplier at shift {s} reproduces channel {n} (code {source.lo + bad + 1} "
                          f"starts at accumulator {int(near[bad])}, the nearest multiplier puts it at "
                          f"{int(got[bad])})")
        mults.append(found[0])
        offs.append(found[1])
    rq = Requant("multiplier", shift=s, multipliers=tuple(mults), offsets=tuple(offs), offset_shift=t,
                 reason=f"int32 multiplier per channel and SRS by {s}, verified on every accumulator in "
                        f"[{acc_lo}, {acc_hi}]", **base)
    return rq, ""


def _largest_shift(c: Fraction) -> int:
    """The largest s with round(c * 2**s) < 2**MULTIPLIER_BITS (the most precise int32 multiplier)."""
    limit = 1 << MULTIPLIER_BITS
    s = MULTIPLIER_BITS - 1 - (c.numerator.bit_length() - c.denominator.bit_length())
    while _round_half_up(c * Fraction(2) ** s) >= limit:
        s -= 1
    while _round_half_up(c * Fraction(2) ** (s + 1)) < limit:
        s += 1
    return s


def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


FIT_ITERATIONS = 200  # ternary-search steps on each channel's scale (float64; the result is verified exactly)


def fit_affine(thresholds: np.ndarray, lo: int, hi: int, acc_lo: int, acc_hi: int,
               rounding: str = "conv_even", best_effort: bool = False) -> AffineMap | None:
    """An affine map ``clamp(round(acc * c_n + e_n), lo, hi)`` whose thresholds on [acc_lo, acc_hi] equal the
    given ones ([channels, hi - lo], as ``AffineMap.thresholds``), or None when the search finds none.

    For nearest rounding, code >= k exactly when ``acc c + e >= k - 1/2`` (away from ties); the thresholds then
    ask, per level, ``t_k c + e >= k - 1/2`` (some accumulator in range reaches k) and ``(t_k - 1) c + e < k - 1/2``
    (the one below does not). For a given c the feasible e lie between ``max_k (k - 1/2 - t_k c)`` and
    ``min_k (k - 1/2 - (t_k - 1) c)``; their gap is concave in c, so a ternary search finds the c with the widest
    gap and e is its midpoint. The candidate is returned only if its thresholds, computed exactly, are equal."""
    t = np.asarray(thresholds, dtype=np.float64)
    n, levels = t.shape
    if levels == 0:
        return None
    beta = np.arange(lo + 1, hi + 1, dtype=np.float64)[None, :] - 0.5
    has_low = t <= acc_hi  # some accumulator in range reaches the level: a lower bound on e
    has_up = t > acc_lo  # the accumulator below the threshold is in range: an upper bound on e

    def gap(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        low = np.where(has_low, beta - t * c[:, None], -np.inf).max(axis=1)
        up = np.where(has_up, beta - (t - 1) * c[:, None], np.inf).min(axis=1)
        return up - low, low, up

    active = [np.flatnonzero(has_low[j] & has_up[j]) for j in range(n)]
    guess = np.ones(n)
    for j, a in enumerate(active):
        if len(a) >= 2 and t[j, a[-1]] > t[j, a[0]]:
            guess[j] = (a[-1] - a[0]) / (t[j, a[-1]] - t[j, a[0]])
        elif len(a) == 1:
            guess[j] = 1.0 / max(1.0, float(acc_hi - acc_lo))
    left, right = guess / 8.0, guess * 8.0
    for _ in range(FIT_ITERATIONS):
        m1 = left + (right - left) / 3.0
        m2 = right - (right - left) / 3.0
        better = gap(m1)[0] < gap(m2)[0]
        left = np.where(better, m1, left)
        right = np.where(better, right, m2)
    c = (left + right) / 2.0
    width, low, up = gap(c)
    if np.any(~(width > 0)) and not best_effort:
        return None
    low = np.where(np.isfinite(low), low, up - 1.0)
    up = np.where(np.isfinite(up), up, low + 1.0)
    e = (low + up) / 2.0
    if not (np.all(np.isfinite(c)) and np.all(c > 0) and np.all(np.isfinite(e))):
        return None
    cand = AffineMap.from_scales([Fraction(float(v)) for v in c], [Fraction(float(v)) for v in e], rounding, lo, hi)
    if best_effort:  # the closest map, for a multiplier with corrections (with_corrections verifies)
        return cand
    return cand if np.array_equal(cand.thresholds(acc_lo, acc_hi), np.asarray(thresholds, dtype=np.int64)) else None


MAX_CORRECTION_RUN = 4  # accumulators one moved threshold may cover before a table is the better choice


def with_corrections(rq: Requant, want: np.ndarray, max_slots: int = MAX_CORRECTION_SLOTS) -> Requant | None:
    """``rq`` (a multiplier) plus the corrections that make it equal to the step function with thresholds
    ``want`` on the whole range, or None when they would need more than ``max_slots`` per channel. The result is
    verified exactly: both functions are constant between consecutive points of their thresholds and
    corrections, so comparing them there compares them everywhere."""
    if rq.kind != "multiplier":
        return None
    have = rq.as_map().thresholds(rq.acc_lo, rq.acc_hi)
    want = np.asarray(want, dtype=np.int64)
    rows = []
    for n in range(rq.channels):
        delta: dict[int, int] = {}
        for t_src, t_rq in zip(want[n].tolist(), have[n].tolist(), strict=True):
            if t_src == t_rq:
                continue
            if abs(t_src - t_rq) > MAX_CORRECTION_RUN:
                return None
            step = 1 if t_src < t_rq else -1  # the source reaches the level earlier (+1) or later (-1)
            for a in range(min(t_src, t_rq), max(t_src, t_rq)):
                if rq.acc_lo <= a <= rq.acc_hi:
                    delta[a] = delta.get(a, 0) + step
        row = tuple(sorted((a, d) for a, d in delta.items() if d))
        if len(row) > max_slots:
            return None
        rows.append(row)
    if not any(rows):
        return rq
    fixed = replace(rq, corrections=tuple(rows))
    for n in range(rq.channels):  # the check: every point where either function may step
        points = {rq.acc_lo, *want[n].tolist(), *have[n].tolist(), *(a for a, _ in rows[n]),
                  *(a + 1 for a, _ in rows[n])}
        pts = np.array(sorted(p for p in points if rq.acc_lo <= p <= rq.acc_hi), dtype=np.int64)
        acc = np.zeros((len(pts), rq.channels), dtype=np.int64)
        acc[:, n] = pts
        got = fixed.apply(acc)[:, n]
        ref = rq.lo + (pts[:, None] >= want[n][None, :]).sum(axis=1)
        if not np.array_equal(got, ref):
            return None
    return replace(fixed, reason=f"{rq.reason}, with {sum(len(r) for r in rows)} corrected accumulators "
                                 f"({fixed.correction_slots} per channel at most)")


def requant_from_table(table: dict, where: str, srs_shifts: tuple[int, int] | None = None,
                       kinds: Sequence[str] = REQUANT_KINDS) -> Requant:
    """The implementation of a step function a frontend read off the source (``table``: ``thresholds`` [channels,
    levels], ``acc_range``, ``clamp``, optionally ``affine_reading``): the table itself, or (``srs_shifts``
    given) the cheapest of ``kinds`` among the implementations of an affine map whose thresholds equal it (the
    chain's exact arithmetic if its thresholds are the source's, else one fitted to them)."""
    lo, hi = (int(v) for v in table["clamp"])
    acc_lo, acc_hi = (int(v) for v in table["acc_range"])
    thresholds = tuple(tuple(int(v) for v in row) for row in table["thresholds"])
    base = Requant("table", "conv_even", lo, hi, acc_lo, acc_hi, thresholds=thresholds, channels=len(thresholds),
                   reason=f"thresholds read off the source ({table.get('source', '')})")
    if srs_shifts is None or tuple(kinds) == ("table",):
        return base
    want = np.asarray(thresholds, dtype=np.int64)
    amap = None
    reading = table.get("affine_reading")
    if reading is not None:  # the chain's exact real arithmetic, if the source's float32 rounding never shows
        amap = AffineMap.from_scales([Fraction(*v) for v in reading["scale"]],
                                     [Fraction(*v) for v in reading["offset"]],
                                     aie_rounding(reading["rounding"], where), *reading["clamp"])
        if (amap.lo, amap.hi) != (lo, hi) or not np.array_equal(amap.thresholds(acc_lo, acc_hi), want):
            amap = None
    how = "the chain's exact arithmetic"
    if amap is None:  # another affine map with the very same thresholds
        amap, how = fit_affine(want, lo, hi, acc_lo, acc_hi), "an affine map fitted to the source's thresholds"
    if amap is None and "multiplier" in kinds:  # the nearest multiplier, corrected where the source differs
        fixed = _corrected_multiplier(table, want, lo, hi, acc_lo, acc_hi, where, srs_shifts)
        if fixed is not None and (("table" not in kinds) or fixed.cycles_per_vector() < base.cycles_per_vector()):
            return fixed
    if amap is None:
        if "table" not in kinds:
            raise UnsupportedQuantizationError(where, "the source's step function equals no affine map on the "
                                               f"range [{acc_lo}, {acc_hi}]", "allow a threshold table")
        return base
    rq = choose_requant(amap, acc_lo, acc_hi, srs_shifts, kinds)
    if rq.kind == "table":
        return base
    return replace(rq, reason=f"{rq.reason}; equal to the source's thresholds ({how})")


def _corrected_multiplier(table: dict, want: np.ndarray, lo: int, hi: int, acc_lo: int, acc_hi: int, where: str,
                          srs_shifts: tuple[int, int]) -> Requant | None:
    """A multiplier of the nearest affine map (the chain's exact reading, else the best fit) with corrections."""
    candidates = []
    reading = table.get("affine_reading")
    if reading is not None:
        candidates.append(AffineMap.from_scales([Fraction(*v) for v in reading["scale"]],
                                                [Fraction(*v) for v in reading["offset"]],
                                                aie_rounding(reading["rounding"], where), *reading["clamp"]))
    for fit in (_least_squares_affine(want, lo, hi, acc_lo, acc_hi),
                fit_affine(want, lo, hi, acc_lo, acc_hi, best_effort=True)):
        if fit is not None:
            candidates.append(fit)
    best: Requant | None = None
    for amap in candidates:
        if (amap.lo, amap.hi) != (lo, hi):
            continue
        try:
            rq = choose_requant(amap, acc_lo, acc_hi, srs_shifts, ("multiplier",))
        except UnsupportedQuantizationError:
            continue
        fixed = with_corrections(rq, want)
        if fixed is not None and (best is None or fixed.correction_slots < best.correction_slots):
            best = fixed
    if best is None:
        return None
    return replace(best, reason=f"{best.reason}; equal to the source's thresholds (no affine map has them all)")


def _least_squares_affine(want: np.ndarray, lo: int, hi: int, acc_lo: int, acc_hi: int) -> AffineMap | None:
    """Per channel the least-squares line through (t_k - 1/2, k - 1/2) over the levels the range decides: robust
    to the few thresholds a source's float32 rounding moved (a minimax fit is pulled by each of them)."""
    t = np.asarray(want, dtype=np.float64)
    k = np.arange(lo + 1, hi + 1, dtype=np.float64) - 0.5
    scales, offsets = [], []
    for row in t:
        active = (row > acc_lo) & (row <= acc_hi)
        if active.sum() < 2:
            return None
        c, e = np.polyfit(row[active] - 0.5, k[active], 1)
        if not (np.isfinite(c) and c > 0 and np.isfinite(e)):
            return None
        scales.append(Fraction(float(c)))
        offsets.append(Fraction(float(e)))
    return AffineMap.from_scales(scales, offsets, "conv_even", lo, hi)

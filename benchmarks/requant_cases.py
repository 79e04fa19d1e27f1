"""Benchmark: exact requantisation (kernels/requant.py) on random cases, every accumulator checked.

    python benchmarks/requant_cases.py [--cases 10000] [--seed 0] [--no-native] [--out benchmarks/results]

For each case (numpy RNG, seeded; the distribution is described in ``DISTRIBUTION`` and in the results file):
``choose_requant`` on the case's accumulator range, then ``Requant.apply`` on EVERY accumulator of the range and
every channel, compared with an exact oracle written here from the definitions (Python integers: floor division,
the remainder against half the divisor, the tie rules of the ten AIE-ML rounding modes), itself cross-checked
on sampled accumulators against a second oracle on ``fractions.Fraction``. Every multiplier and table case is
also co-simulated natively (kernels/templates/nn2aie_requant.h compiled with g++ against the AIE-API emulation
headers, kernels/requant_native.py), batched into few driver runs. Writes ``requant_cases.md`` / ``.json``:
kinds chosen (with their reasons aggregated), values checked, mismatches (the script exits 1 on any), and the
cycles per 32-lane output vector per kind from ``Requant.cycles_per_vector`` (its stated, uncalibrated
instruction-count assumptions). Ranges are capped (``MAX_WIDTH``, ``MAX_PAIRS``) so the exhaustive checks stay
fast; real layers' ranges are wider (choose_requant verifies those in closed form, not by enumeration).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import multiprocessing
import pathlib
import re
import statistics
import sys
import time
from fractions import Fraction

import numpy as np

from nn2aie.errors import MissingToolError, UnsupportedQuantizationError
from nn2aie.kernels import requant as rq_mod
from nn2aie.kernels.requant import AffineMap, choose_requant
from nn2aie.numerics import AIE_ROUNDING_MODES

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_common import machine  # noqa: E402

OUTPUTS = {"int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7), "uint4": (0, 15), "int16": (-32768, 32767)}
OUTPUT_WEIGHTS = {"int8": 0.45, "uint8": 0.25, "int4": 0.12, "uint4": 0.08, "int16": 0.10}
FAMILIES = {  # name -> probability
    "per-channel QDQ (bias in the offset)": 0.25,
    "per-channel QDQ (int32 bias in the accumulator)": 0.15,
    "per-tensor QDQ": 0.20,
    "power of two (fixed point)": 0.15,
    "power-of-two scales with bias / zero point": 0.10,
    "small rationals (exact ties)": 0.10,
    "accumulator beyond int32": 0.05,
}
MAX_WIDTH = 1 << 13  # accumulators per range
MAX_PAIRS = 1 << 14  # accumulators x channels per case
MAX_CHANNELS = 64
MAX_CHANNELS_INT16 = 4  # int16 codes: up to 65535 thresholds per channel to verify
SAMPLES = 8  # accumulators per case also checked against the Fraction oracle
BATCH = 400  # cases per worker batch and native run
DISTRIBUTION = [
    "family (probability): " + ", ".join(f"{k} {v:.0%}" for k, v in FAMILIES.items()),
    "output codes: " + ", ".join(f"{k} [{OUTPUTS[k][0]}, {OUTPUTS[k][1]}] {v:.0%}" for k, v in OUTPUT_WEIGHTS.items()),
    "rounding: uniform over the 10 AIE-ML modes (" + ", ".join(AIE_ROUNDING_MODES) + ")",
    "QDQ scales (Brevitas / ONNX QDQ export): float32 sx log-uniform in [2^-12, 2^-1], per-channel float32 sw_n in "
    "[2^-10, 2^-2] (one sw for per-tensor), float32 sy in [2^-10, 2^1]; the map's scale is the exact rational "
    "sx*sw_n/sy of those float32 values",
    "offsets: int32 bias codes b_n uniform in [-2^14, 2^14] times the float32 bias scale float32(sx*sw_n), over sy, "
    "plus an integer zero point (int8 [-16, 16], uint8 [0, 255], int4 [-2, 2], uint4 [0, 15], int16 [-512, 512]; "
    "zero half of the time for signed codes); 'bias in the accumulator': the offset is the zero point only",
    "power of two: scale 2^-k, k uniform in [-2, 24], no offset, one scale for the layer",
    "power-of-two scales with bias: 2^-k_n per channel (k_n in [4, 20]) with an offset b_n 2^-k_n + zp",
    "small rationals: scale p/q and offset r/(2q), p, q in [1, 12], r in [-40, 40] (many values exactly on a tie)",
    "channels: 1 (40%), else log-uniform in [2, 64]; int16 codes at most 4; accumulator range: width log-uniform in "
    f"[1, {MAX_WIDTH}] accumulators, channels reduced so that width x channels <= {MAX_PAIRS}; placed (1/3 each) "
    "around where the codes change (the unsaturated region), anywhere inside +-2^(b-1) for b uniform in [8, 32], or "
    "at an end of int32 (+-2^31) 10% of the latter; 'beyond int32': a window inside [2^31, 2^35]",
    "accumulator tag of the native run: acc32 70%, acc64 30%; constants per lane or per channel row (4 x 8 block) "
    "half each",
]


# -- the oracles -----------------------------------------------------------------------------------------------
def oracle_codes(scale: list[Fraction], offset: list[Fraction], mode: str, lo: int, hi: int, acc_lo: int,
                 acc_hi: int) -> np.ndarray:
    """[values, channels] codes clamp(round(acc * c_n + e_n)) for every accumulator of [acc_lo, acc_hi], in exact
    integers: v = N / D with N = acc * P + E; q = floor(v), r = N - q D; the rounding rules from their definitions."""
    den = [math.lcm(c.denominator, e.denominator) for c, e in zip(scale, offset, strict=True)]
    P = np.array([c.numerator * (d // c.denominator) for c, d in zip(scale, den, strict=True)], dtype=object)
    E = np.array([e.numerator * (d // e.denominator) for e, d in zip(offset, den, strict=True)], dtype=object)
    D = np.array(den, dtype=object)
    acc = np.array(range(acc_lo, acc_hi + 1), dtype=object)[:, None]
    N = acc * P[None, :] + E[None, :]
    q = N // D
    r = N - q * D
    inexact, positive, negative = r != 0, N > 0, N < 0
    if mode == "floor":
        y = q
    elif mode == "ceil":
        y = q + inexact
    elif mode == "symmetric_floor":  # toward zero: up only for an inexact negative value
        y = q + (inexact & negative)
    elif mode == "symmetric_ceil":  # away from zero: up only for an inexact positive value
        y = q + (inexact & positive)
    else:
        twice = 2 * r
        up = twice > D
        tie = twice == D
        odd_q = (q % 2) == 1
        tie_up = {"negative_inf": np.zeros(q.shape, bool), "positive_inf": np.ones(q.shape, bool),
                  "symmetric_zero": negative, "symmetric_inf": positive, "conv_even": odd_q, "conv_odd": ~odd_q}[mode]
        y = q + (up | (tie & tie_up))
    return np.clip(y.astype(object), lo, hi).astype(np.int64)


def round_fraction(v: Fraction, mode: str) -> int:
    """The second oracle: one exact rational rounded by the mode's definition."""
    fl = math.floor(v)
    if mode == "floor":
        return fl
    if mode == "ceil":
        return math.ceil(v)
    if mode == "symmetric_floor":
        return math.trunc(v)
    if mode == "symmetric_ceil":
        return math.floor(v) if v < 0 else math.ceil(v)  # away from zero: sign(v) * ceil(|v|)
    d = v - fl
    if d != Fraction(1, 2):
        return fl + (d > Fraction(1, 2))
    return {"negative_inf": fl, "positive_inf": fl + 1, "symmetric_zero": fl + (v < 0),
            "symmetric_inf": fl + (v > 0), "conv_even": fl + (fl % 2), "conv_odd": fl + 1 - (fl % 2)}[mode]


# -- the cases -------------------------------------------------------------------------------------------------
def f32(x: float) -> Fraction:
    return Fraction(float(np.float32(x)))


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(2.0 ** rng.uniform(math.log2(lo), math.log2(hi)))


def zero_point(rng: np.random.Generator, out: str) -> int:
    if out.startswith("u"):
        return int(rng.integers(0, OUTPUTS[out][1] + 1))
    if rng.random() < 0.5:
        return 0
    z = {"int8": 16, "int4": 2, "int16": 512}[out]
    return int(rng.integers(-z, z + 1))


def draw_case(rng: np.random.Generator) -> dict:
    family = str(rng.choice(list(FAMILIES), p=list(FAMILIES.values())))
    out = str(rng.choice(list(OUTPUT_WEIGHTS), p=list(OUTPUT_WEIGHTS.values())))
    lo, hi = OUTPUTS[out]
    mode = str(rng.choice(AIE_ROUNDING_MODES))
    width = max(1, int(log_uniform(rng, 1, MAX_WIDTH)))
    channels = 1 if rng.random() < 0.4 else int(log_uniform(rng, 2, MAX_CHANNELS))
    channels = max(1, min(channels, MAX_PAIRS // width, MAX_CHANNELS_INT16 if out == "int16" else MAX_CHANNELS))
    if family.startswith("per-channel QDQ") or family == "per-tensor QDQ" or family == "accumulator beyond int32":
        sx, sy = f32(log_uniform(rng, 2**-12, 2**-1)), f32(log_uniform(rng, 2**-10, 2))
        n_w = 1 if family == "per-tensor QDQ" else channels
        sw = [f32(log_uniform(rng, 2**-10, 2**-2)) for _ in range(n_w)] * (channels if n_w == 1 else 1)
        scale = [sx * w / sy for w in sw]
        zp = zero_point(rng, out)
        if family == "per-channel QDQ (int32 bias in the accumulator)":
            offset = [Fraction(zp)] * channels
        else:
            bias = rng.integers(-(1 << 14), (1 << 14) + 1, channels)
            offset = [int(b) * f32(float(sx * w)) / sy + zp for b, w in zip(bias, sw, strict=True)]
    elif family == "power of two (fixed point)":
        k = int(rng.integers(-2, 25))
        scale, offset = [Fraction(2) ** -k] * channels, [Fraction(0)] * channels
    elif family == "power-of-two scales with bias / zero point":
        ks = rng.integers(4, 21, channels)
        zp = zero_point(rng, out)
        scale = [Fraction(1, 1 << int(k)) for k in ks]
        offset = [Fraction(int(b), 1 << int(k)) + zp for b, k in zip(rng.integers(-(1 << 14), 1 << 14, channels), ks,
                                                                      strict=True)]
    else:  # small rationals
        ps, qs = rng.integers(1, 13, channels), rng.integers(1, 13, channels)
        scale = [Fraction(int(p), int(q)) for p, q in zip(ps, qs, strict=True)]
        offset = [Fraction(int(r), 2 * int(q)) for r, q in zip(rng.integers(-40, 41, channels), qs, strict=True)]
    if family == "accumulator beyond int32":
        acc_lo = int(rng.integers(1 << 31, (1 << 35) - width))
        if rng.random() < 0.5:
            acc_lo = -acc_lo - width
    else:
        where = rng.random()
        if where < 1 / 3:  # around the codes' transition region
            c0, e0 = scale[0], offset[0]
            centre = int((Fraction(lo + hi, 2) - e0) / c0) + int(rng.integers(-width, width + 1))
        else:
            bits = int(rng.integers(8, 33))
            centre = int(rng.integers(-(1 << (bits - 1)), 1 << (bits - 1)))
            if where > 0.9:
                centre = (1 << 31) if rng.random() < 0.5 else -(1 << 31)
        acc_lo = max(rq_mod.INT32_RANGE[0], min(centre - width // 2, rq_mod.INT32_RANGE[1] - width + 1))
    return {"family": family, "out": out, "mode": mode, "scale": scale, "offset": offset, "acc_lo": acc_lo,
            "acc_hi": acc_lo + width - 1, "acc_tag": "acc32" if rng.random() < 0.7 else "acc64",
            "layout": "rows" if rng.random() < 0.5 else "lanes", "sample_seed": int(rng.integers(0, 2**31))}


def normalise_reason(reason: str) -> str:
    """A reason with its numbers replaced by '#' (so equal reasons aggregate)."""
    return re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", reason)


def check_case(case: dict) -> dict:
    """choose_requant, then apply == oracle on every accumulator; the oracle against Fractions on samples."""
    lo, hi = OUTPUTS[case["out"]]
    scale, offset, mode = case["scale"], case["offset"], case["mode"]
    a_lo, a_hi = case["acc_lo"], case["acc_hi"]
    src = AffineMap.from_scales(scale, offset, mode, lo, hi)
    res = {"family": case["family"], "out": case["out"], "channels": len(scale), "values": a_hi - a_lo + 1}
    try:
        rq = choose_requant(src, a_lo, a_hi)
    except UnsupportedQuantizationError as exc:
        return res | {"kind": "refused", "reason": normalise_reason(exc.args[0] if exc.args else str(exc)),
                      "pairs": 0, "apply_mismatches": 0, "oracle_mismatches": 0}
    want = oracle_codes(scale, offset, mode, lo, hi, a_lo, a_hi)
    grid = np.repeat(np.arange(a_lo, a_hi + 1, dtype=np.int64)[:, None], len(scale), axis=1)
    got = rq.apply(grid)
    rng = np.random.default_rng(case["sample_seed"])
    picks = sorted({a_lo, a_hi, *(int(v) for v in rng.integers(a_lo, a_hi + 1, SAMPLES - 2))})
    oracle_bad = 0
    for a in picks:
        for n in range(len(scale)):
            oracle_bad += int(want[a - a_lo, n]) != min(hi, max(lo, round_fraction(a * scale[n] + offset[n], mode)))
    levels = len(rq.table_levels()[1]) if rq.kind == "table" else 0
    reason = rq.reason
    if rq.kind == "table":
        inner = reason[reason.find("(") + 1:-1] if "(" in reason else reason
        reason = "; ".join(sorted(normalise_reason(r) for r in inner.split("; ")))
    else:
        reason = normalise_reason(reason)
    res |= {"kind": rq.kind, "reason": reason, "pairs": int(want.size), "levels": levels,
            "cycles": rq.cycles_per_vector(32), "apply_mismatches": int(np.count_nonzero(got != want)),
            "oracle_mismatches": oracle_bad}
    if rq.kind in ("multiplier", "table"):
        res["native"] = {"requant": rq, "want": want.astype(np.int32), "acc_tag": case["acc_tag"],
                         "layout": case["layout"]}
    return res


def run_native(results: list[dict], native: dict) -> None:
    """Co-simulate the batch's multiplier and table cases in one batched run; count checks and mismatches."""
    from nn2aie.kernels.requant_native import exhaustive_codes

    todo = [r for r in results if "native" in r]
    if not todo:
        return
    t0 = time.perf_counter()
    grids = exhaustive_codes([r["native"]["requant"] for r in todo], acc_tags=[r["native"]["acc_tag"] for r in todo],
                             layouts=[r["native"]["layout"] for r in todo])
    native["seconds"] += time.perf_counter() - t0
    for r, got in zip(todo, grids, strict=True):
        bad = int(np.count_nonzero(got != r["native"]["want"]))
        native["cases"] += 1
        native["pairs"] += int(got.size)
        native["mismatches"] += bad
        native["by_kind"][r["kind"]] += 1
        if bad and len(native["examples"]) < 5:
            native["examples"].append(r["native"]["requant"].to_json())
    for r in todo:
        del r["native"]


def summarise(results: list[dict]) -> dict:
    kinds = collections.Counter(r["kind"] for r in results)
    reasons: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in results:
        reasons[r["kind"]][r["reason"]] += 1
    by_family: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    by_out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in results:
        by_family[r["family"]][r["kind"]] += 1
        by_out[r["out"]][r["kind"]] += 1
    cost = {}
    for kind in ("shift", "multiplier", "table"):
        rs = [r for r in results if r["kind"] == kind]
        if not rs:
            continue
        cyc = [r["cycles"] for r in rs]
        row = {"cases": len(rs), "cycles_median": statistics.median(cyc), "cycles_max": max(cyc)}
        if kind == "table":
            lv = [r["levels"] for r in rs]
            row |= {"levels_median": statistics.median(lv), "levels_max": max(lv)}
        cost[kind] = row
    return {"kinds": dict(kinds), "reasons": {k: dict(v.most_common()) for k, v in reasons.items()},
            "by_family": {k: dict(v) for k, v in by_family.items()},
            "by_output": {k: dict(v) for k, v in by_out.items()},
            "accumulators": sum(r["values"] for r in results if r["kind"] != "refused"),
            "pairs": sum(r["pairs"] for r in results), "apply_mismatches": sum(r["apply_mismatches"] for r in results),
            "oracle_mismatches": sum(r["oracle_mismatches"] for r in results), "cost": cost}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-native", action="store_true", help="skip the g++ co-simulation")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    cases = [draw_case(rng) for _ in range(args.cases)]
    native = {"cases": 0, "pairs": 0, "mismatches": 0, "seconds": 0.0, "by_kind": collections.Counter(),
              "examples": [], "compiler": None, "skipped": None}
    do_native = not args.no_native
    if do_native:
        try:
            from nn2aie.kernels.requant_native import compile_driver
            from nn2aie.sim.native.harness import compiler_version, find_compiler

            compile_driver()
            native["compiler"] = compiler_version(find_compiler())
        except MissingToolError as exc:
            do_native, native["skipped"] = False, str(exc)
    t0 = time.perf_counter()
    results: list[dict] = []
    jobs = max(1, args.jobs or multiprocessing.cpu_count())
    with multiprocessing.Pool(jobs) as pool:
        for start in range(0, len(cases), BATCH):
            batch = pool.map(check_case, cases[start:start + BATCH], chunksize=8)
            if do_native:
                run_native(batch, native)
            else:
                for r in batch:
                    r.pop("native", None)
            results += batch
            print(f"{len(results)} / {len(cases)} cases", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t0
    s = summarise(results)
    native["by_kind"] = dict(native["by_kind"])
    failed = s["apply_mismatches"] or s["oracle_mismatches"] or native["mismatches"]
    meta = machine() | {"date": datetime.date.today().isoformat(), "numpy": np.__version__,
                        "compiler": native["compiler"], "seconds": round(seconds, 1), "seed": args.seed,
                        "cases": args.cases}
    assumptions = {
        "cycles": "Requant.cycles_per_vector(32): vector-unit cycles per 32-lane output vector beyond the plain SRS "
                  "epilogue; an instruction count, NOT calibrated (kernels/requant.py): 16 int32 lanes per compare "
                  "or add, 16 acc64 lanes per register; int32 x int32 multiply = 2 passes of 32 x 16 per 16 lanes; "
                  "one UPS and one SRS per 16 lanes; a table level = compare + masked add per 16 lanes, plus one "
                  "int32 read per 16 lanes; one instruction per slot per cycle, loads and stores hidden",
        "native": "kernels/templates/nn2aie_requant.h compiled with the native harness's compiler and flags against "
                  "nn2aie's AIE-API emulation headers (sim/native/include), 32 lanes per call, every accumulator of "
                  "each range on every channel",
        "distribution": DISTRIBUTION,
    }
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "requant_cases.json").write_text(json.dumps({"meta": meta, "assumptions": assumptions, "summary": s,
                                                        "native": native}, indent=1) + "\n")
    (out / "requant_cases.md").write_text(render_md(meta, s, native, assumptions) + "\n")
    print(f"wrote {out / 'requant_cases.md'}")
    if failed:
        print(f"MISMATCHES: apply {s['apply_mismatches']}, oracle {s['oracle_mismatches']}, native "
              f"{native['mismatches']}", file=sys.stderr)
        return 1
    return 0


def render_md(meta: dict, s: dict, native: dict, assumptions: dict) -> str:
    kinds = ("shift", "multiplier", "table", "refused")
    lines = [
        "# Exact requantisation on random cases",
        "",
        f"Date {meta['date']}; machine: {meta['cpu']} ({meta['cores']} cores), Python {meta['python']}, nn2aie "
        f"{meta['nn2aie']}, numpy {meta['numpy']}, compiler {meta['compiler'] or 'none (native skipped)'}. "
        f"Regenerate: `python benchmarks/requant_cases.py --cases {meta['cases']}` (seed {meta['seed']}; "
        f"{meta['seconds']} s).",
        "",
        "Each case: `choose_requant` (kernels/requant.py) on the case's accumulator range, then `Requant.apply` on "
        "every accumulator of the range on every channel against an exact integer oracle written from the rounding "
        "definitions (cross-checked on sampled accumulators against a `Fraction` oracle), and every multiplier and "
        "table case co-simulated natively (`nn2aie_requant.h` through g++ and the AIE-API emulation headers).",
        "",
        "## Checks",
        "",
        "| check | values | mismatches |",
        "|---|---:|---:|",
        f"| `Requant.apply` vs exact oracle ({s['accumulators']} accumulators, each on every channel) | "
        f"{s['pairs']} | {s['apply_mismatches']} |",
        f"| integer oracle vs Fraction oracle (samples) | {SAMPLES} per case x channels | {s['oracle_mismatches']} |",
        f"| native C++ vs exact oracle ({native['cases']} cases: {native['by_kind'].get('multiplier', 0)} multiplier, "
        f"{native['by_kind'].get('table', 0)} table; {native['seconds']:.1f} s) | {native['pairs']} | "
        f"{native['mismatches']} |",
        "",
    ]
    if native["skipped"]:
        lines += [f"Native co-simulation skipped: {native['skipped']}", ""]
    lines += ["## Kinds chosen", "", "| kind | cases | share |", "|---|---:|---:|"]
    total = sum(s["kinds"].values())
    for k in kinds:
        n = s["kinds"].get(k, 0)
        lines.append(f"| {k} | {n} | {100 * n / max(1, total):.1f} % |")
    lines += ["", "By case family:", "", "| family | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]
    for fam in FAMILIES:
        row = s["by_family"].get(fam, {})
        lines.append(f"| {fam} | " + " | ".join(str(row.get(k, 0)) for k in kinds) + " |")
    lines += ["", "By output codes:", "", "| codes | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]
    for o in OUTPUTS:
        row = s["by_output"].get(o, {})
        lines.append(f"| {o} | " + " | ".join(str(row.get(k, 0)) for k in kinds) + " |")
    lines += ["", "Reasons (numbers replaced by #; a table lists why no shift or multiplier was taken):", "",
              "| kind | reason | cases |", "|---|---|---:|"]
    for k in kinds:
        for reason, n in list(s["reasons"].get(k, {}).items())[:8]:
            lines.append(f"| {k} | {reason.replace('|', '/')} | {n} |")
    lines += ["", "## Cost per 32-lane output vector (modelled, uncalibrated)", "",
              "| kind | cases | cycles (median) | cycles (max) | table levels (median) | table levels (max) |",
              "|---|---:|---:|---:|---:|---:|"]
    for k, row in s["cost"].items():
        lines.append(f"| {k} | {row['cases']} | {row['cycles_median']:g} | {row['cycles_max']:g} | "
                     f"{row.get('levels_median', '')} | {row.get('levels_max', '')} |")
    lines += ["", f"Assumptions: {assumptions['cycles']}.", "", "## Case distribution", ""]
    lines += [f"- {d}" for d in DISTRIBUTION]
    return "\n".join(lines)


def _reason_sort_key(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


if __name__ == "__main__":
    sys.exit(main())

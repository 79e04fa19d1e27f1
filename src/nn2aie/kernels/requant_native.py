"""Native co-simulation of the requantisation epilogues: ``templates/nn2aie_requant.h`` compiled with the host C++
compiler against the AIE-API emulation headers (as ``sim/native`` does for whole kernels) and run on many
accumulator values of many ``Requant``s in one process.

Python side of the tile form: ``lane_constants`` turns a ``Requant`` and the channel of every accumulator lane of a
block into the per-lane arrays the header's functions take (int32 ``M_n`` / ``B'_n`` for a multiplier, the base
code and threshold rows for a table); ``block_lanes`` is the lane -> channel map of an MMUL_M x MMUL_N block
(row-major lanes: the block's channel row repeated on every row). ``run_cases`` runs explicit cases,
``exhaustive_codes`` every accumulator of each Requant's range on every channel, returning [values, channels]
codes to compare with ``Requant.apply``.

The driver binary is cached like the kernel binaries (``sim/native/harness.py``: ``$NN2AIE_NATIVE_CACHE``,
``$NN2AIE_CXX``, the same flags), keyed by a hash of its source, the headers, the compiler and the flags.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nn2aie.errors import InternalCheckError
from nn2aie.kernels.requant import INT32_RANGE, Requant
from nn2aie.numerics import AIE_ROUNDING_MODES
from nn2aie.sim.native.harness import CXX_FLAGS, INCLUDE_DIR, compiler_version, default_cache_dir, find_compiler

LANES = 32  # accumulator lanes per call (one MMUL_M x MMUL_N = 4 x 8 block of the int8 dense mmul)
BLOCK = (4, 8)  # (rows, cols) of the block layout: per-channel rows of 8 values repeated on 4 rows
HEADER_DIR = pathlib.Path(__file__).resolve().parent / "templates"
HEADER_NAME = "nn2aie_requant.h"
CODE_TYPES = {"int8": (-(1 << 7), (1 << 7) - 1), "uint8": (0, (1 << 8) - 1), "int16": (-(1 << 15), (1 << 15) - 1),
              "uint16": (0, (1 << 16) - 1)}  # index = the driver's type number
ACC_TAGS = ("acc32", "acc64")
KINDS = ("multiplier", "table")
CASE_HEADER_WORDS = 16  # int32 words per case header (keeps every array 64-byte aligned)
CHUNK_WORDS = 1 << 23  # int32 words per driver run (32 MB); larger batches are split and run in parallel
SRS_SHIFTS = (0, 59)  # shifts the multiplier's SRS and UPS take here (requant.py chooses shifts >= 0)


def code_type(lo: int, hi: int) -> str:
    """The narrowest container (int8, uint8, int16, uint16) holding every code in [lo, hi]."""
    for name, (tlo, thi) in CODE_TYPES.items():
        if tlo <= lo and hi <= thi:
            return name
    raise ValueError(f"codes [{lo}, {hi}] fit no 8- or 16-bit container")


def block_lanes(block_channels: Sequence[int], rows: int) -> tuple[int, ...]:
    """Channel of every lane of a ``rows`` x ``len(block_channels)`` accumulator block, lanes row-major."""
    return tuple(int(c) for c in block_channels) * rows


@dataclass(frozen=True)
class LaneConstants:
    """Per-lane operands of the header's functions (int32): ``multipliers`` / ``offsets`` (M_n, B'_n) of a
    multiplier; ``base`` and ``levels`` [count, lanes] of a table."""

    kind: str
    multipliers: np.ndarray
    offsets: np.ndarray
    base: np.ndarray
    levels: np.ndarray


def lane_constants(rq: Requant, lane_channels: Sequence[int]) -> LaneConstants:
    """The constants of ``rq`` for lanes whose channels are ``lane_channels``."""
    ch = np.asarray(lane_channels, dtype=np.int64)
    if ch.ndim != 1 or ch.size == 0 or ch.min() < 0 or ch.max() >= rq.channels:
        raise ValueError(f"lane channels must index the {rq.channels} channel(s) of the Requant")
    none = np.zeros(0, dtype=np.int32)
    if rq.kind == "multiplier":
        m = np.asarray(rq.multipliers, dtype=np.int64)[ch]
        b = np.asarray(rq.offsets, dtype=np.int64)[ch]
        return LaneConstants("multiplier", _int32(m, "multiplier"), _int32(b, "offset"), none,
                             np.zeros((0, ch.size), dtype=np.int32))
    if rq.kind == "table":
        base, levels = table_int32(rq)
        return LaneConstants("table", none, none, base[ch], levels[:, ch])
    raise ValueError(f"kind {rq.kind!r} has no header function here (a shift is the family's SRS epilogue)")


def table_int32(rq: Requant) -> tuple[np.ndarray, np.ndarray]:
    """``Requant.table_levels`` as int32 arrays (base [channels], levels [count, channels]). Its padding value
    ``acc_hi + 1`` is not an int32 when acc_hi is the int32 maximum; then a padded level is put at ``acc_lo`` (every
    accumulator of the range counts it) and the base lowered by one for it: the same codes, in int32."""
    base_t, levels_t = rq.table_levels()
    base = np.asarray(base_t, dtype=np.int64)
    levels = np.asarray(levels_t, dtype=np.int64).reshape(len(levels_t), rq.channels)
    never = rq.acc_hi + 1
    if never > INT32_RANGE[1]:
        pad = levels == never
        levels = np.where(pad, rq.acc_lo, levels)
        base = base - pad.sum(axis=0)
    return _int32(base, "table base"), _int32(levels, "threshold")


def _int32(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    if x.size and (x.min() < INT32_RANGE[0] or x.max() > INT32_RANGE[1]):
        raise ValueError(f"a {what} does not fit int32")
    return x.astype(np.int32)


@dataclass(frozen=True)
class NativeCase:
    """Accumulator vectors ``acc`` [vectors, LANES] (values inside int32) through ``requant`` with lane ``l`` on
    channel ``lane_channels[l]``. ``layout`` "rows": the lanes are a BLOCK (rows x cols) with per-channel rows
    (``lane_channels`` = ``block_lanes(row, BLOCK[0])``), the driver loads the constants as rows and repeats them
    (``repeat_row``, ``requant_table_rows``); "lanes": per-lane constants, any channel map."""

    requant: Requant
    lane_channels: tuple[int, ...]
    acc: np.ndarray
    acc_tag: str = "acc32"
    out_type: str | None = None  # default: code_type(lo, hi)
    layout: str = "lanes"


def _encode(case: NativeCase) -> np.ndarray:
    rq = case.requant
    if len(case.lane_channels) != LANES:
        raise ValueError(f"a case has {LANES} lanes, got {len(case.lane_channels)} lane channels")
    if rq.kind not in KINDS:
        raise ValueError(f"kind {rq.kind!r} is not run natively here (a shift is the family's SRS epilogue)")
    if case.acc_tag not in ACC_TAGS or case.layout not in ("lanes", "rows"):
        raise ValueError(f"bad accumulator tag {case.acc_tag!r} or layout {case.layout!r}")
    out_type = case.out_type or code_type(rq.lo, rq.hi)
    tlo, thi = CODE_TYPES[out_type]
    if not (tlo <= rq.lo and rq.hi <= thi):
        raise ValueError(f"codes [{rq.lo}, {rq.hi}] do not fit {out_type}")
    acc = np.asarray(case.acc, dtype=np.int64)
    if acc.ndim != 2 or acc.shape[1] != LANES:
        raise ValueError(f"accumulators must be [vectors, {LANES}], got {list(acc.shape)}")
    acc = _int32(acc, "accumulator")
    consts = lane_constants(rq, case.lane_channels)
    width = LANES
    if case.layout == "rows":
        rows, cols = BLOCK
        row = case.lane_channels[:cols]
        if tuple(case.lane_channels) != block_lanes(row, rows):
            raise ValueError(f"layout 'rows' needs lane channels = block_lanes(row of {cols}, {rows})")
        consts = lane_constants(rq, row)
        width = cols
    if rq.kind == "multiplier":
        if not (SRS_SHIFTS[0] <= rq.shift <= SRS_SHIFTS[1] and SRS_SHIFTS[0] <= rq.offset_shift <= SRS_SHIFTS[1]):
            raise ValueError(f"shift {rq.shift} / offset shift {rq.offset_shift} outside {SRS_SHIFTS}")
        body = [consts.multipliers, consts.offsets]
        count = 0
    else:
        body = [consts.base, consts.levels.ravel()]
        count = consts.levels.shape[0]
    head = np.zeros(CASE_HEADER_WORDS, dtype=np.int32)
    head[:11] = [KINDS.index(rq.kind), list(CODE_TYPES).index(out_type), 32 if case.acc_tag == "acc32" else 64,
                 AIE_ROUNDING_MODES.index(rq.rounding), rq.lo, rq.hi, rq.shift, rq.offset_shift, count,
                 acc.shape[0], width]
    parts = [head, *body]
    used = sum(p.size for p in parts)
    parts.append(np.zeros((-used) % 16, dtype=np.int32))  # the accumulators start 64-byte aligned
    parts.append(acc.ravel())
    return np.concatenate([np.asarray(p, dtype=np.int32) for p in parts])


# -- driver ------------------------------------------------------------------------------------------------------
DRIVER = r"""// Generated by nn2aie (kernels/requant_native.py) for native co-simulation of nn2aie_requant.h; not part
// of any Vitis project. Usage: driver IN OUT. IN: cases of int32 words (host order), each a 16-word header
//   kind (0 multiplier, 1 table), code type (0 int8, 1 uint8, 2 int16, 3 uint16), accumulator bits (32 / 64),
//   rounding (index in nn2aie.numerics.AIE_ROUNDING_MODES), lo, hi, shift, offset shift, levels, vectors, width
// then the constants (multiplier: M[width], B[width]; table: base[width], levels[levels][width]; width = 32 per
// lane, or 8 per channel row repeated on the 4 rows of the block), zero padding to 16 words, and vectors x 32
// accumulator values. OUT: vectors x 32 int32 codes per case. Exit 0 done, 2 usage or file error, 3 emulation error.
#include <aie_api/aie.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "nn2aie_requant.h"

namespace {
constexpr unsigned N = 32, ROWS = 4, COLS = 8, HEAD = 16;
using namespace nn2aie_requant;

const aie::rounding_mode ROUNDING[] = {
    aie::rounding_mode::floor,          aie::rounding_mode::ceil,         aie::rounding_mode::symmetric_floor,
    aie::rounding_mode::symmetric_ceil, aie::rounding_mode::negative_inf, aie::rounding_mode::positive_inf,
    aie::rounding_mode::symmetric_zero, aie::rounding_mode::symmetric_inf, aie::rounding_mode::conv_even,
    aie::rounding_mode::conv_odd};

// The constants of one case as N lanes: loaded directly (width N) or as a channel row repeated (width COLS).
aie::vector<int32, N> lanes(const int32* p, int width) {
  if (width == int(N)) return aie::load_v<N>(p);
  return repeat_row<ROWS, COLS>(p);
}

template <typename O, typename AccTag>
std::size_t run_case(const int32* h, const int32* data, int32* out) {
  const int kind = h[0], lo = h[4], hi = h[5], shift = h[6], offset_shift = h[7], width = h[10];
  const unsigned count = static_cast<unsigned>(h[8]), vectors = static_cast<unsigned>(h[9]);
  if (width != int(N) && width != int(COLS)) aie_emu::fail("bad constant width %d", width);
  aie::set_rounding(ROUNDING[h[3]]);
  aie::set_saturation(aie::saturation_mode::saturate);
  std::size_t used = std::size_t(width) * (kind == 0 ? 2 : 1 + count);  // the constants
  used += (16 - (HEAD + used) % 16) % 16;  // padding: the accumulators start 64-byte aligned
  const int32* acc = data + used;
  alignas(64) O codes[N];
  for (unsigned v = 0; v < vectors; ++v) {
    aie::accum<AccTag, N> a;
    a.from_vector(aie::load_v<N>(acc + std::size_t(v) * N));
    aie::vector<O, N> y;
    if (kind == 0) {
      y = requant_multiplier<O>(a, lanes(data, width), lanes(data + width, width), offset_shift, shift, O(lo), O(hi));
    } else if (width == int(N)) {
      y = requant_table<O>(a, lanes(data, width), data + width, count);
    } else {
      y = requant_table_rows<O, ROWS, COLS>(a, lanes(data, width), data + width, count);
    }
    aie::store_v(codes, y);
    for (unsigned i = 0; i < N; ++i) out[std::size_t(v) * N + i] = codes[i];
  }
  return used + std::size_t(vectors) * N;
}

template <typename O>
std::size_t dispatch_acc(const int32* h, const int32* data, int32* out) {
  if (h[2] == 32) return run_case<O, acc32>(h, data, out);
  if (h[2] == 64) return run_case<O, acc64>(h, data, out);
  aie_emu::fail("bad accumulator bits %d", h[2]);
}

std::size_t dispatch(const int32* h, const int32* data, int32* out) {
  if (h[0] != 0 && h[0] != 1) aie_emu::fail("bad kind %d", h[0]);
  if (h[3] < 0 || h[3] >= int(sizeof(ROUNDING) / sizeof(ROUNDING[0]))) aie_emu::fail("bad rounding %d", h[3]);
  switch (h[1]) {
    case 0: return dispatch_acc<int8>(h, data, out);
    case 1: return dispatch_acc<uint8>(h, data, out);
    case 2: return dispatch_acc<int16>(h, data, out);
    case 3: return dispatch_acc<uint16>(h, data, out);
    default: aie_emu::fail("bad code type %d", h[1]);
  }
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s IN OUT\n", argv[0]);
    return 2;
  }
  std::FILE* f = std::fopen(argv[1], "rb");
  if (!f) {
    std::fprintf(stderr, "cannot open %s\n", argv[1]);
    return 2;
  }
  std::fseek(f, 0, SEEK_END);
  const long bytes = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  const std::size_t words = static_cast<std::size_t>(bytes) / sizeof(int32);
  int32* in = static_cast<int32*>(std::aligned_alloc(64, (words * sizeof(int32) + 63) / 64 * 64 + 64));
  if (!in || std::fread(in, sizeof(int32), words, f) != words) {
    std::fprintf(stderr, "cannot read %s\n", argv[1]);
    return 2;
  }
  std::fclose(f);
  std::vector<int32> out;
  try {
    std::size_t pos = 0;
    while (pos < words) {
      if (pos + HEAD > words) aie_emu::fail("truncated case header");
      const int32* h = in + pos;
      const std::size_t start = out.size();
      out.resize(start + std::size_t(h[9]) * N);
      pos += HEAD + dispatch(h, in + pos + HEAD, out.data() + start);
      if (pos > words) aie_emu::fail("truncated case");
    }
  } catch (const aie_emu::error& e) {
    std::fprintf(stderr, "emulation error: %s\n", e.what());
    return 3;
  }
  std::FILE* g = std::fopen(argv[2], "wb");
  if (!g || std::fwrite(out.data(), sizeof(int32), out.size(), g) != out.size()) {
    std::fprintf(stderr, "cannot write %s\n", argv[2]);
    return 2;
  }
  std::fclose(g);
  std::free(in);
  return 0;
}
"""


@functools.lru_cache(maxsize=1)
def _sources_digest() -> str:
    h = hashlib.sha256(DRIVER.encode())
    files = sorted(p for p in INCLUDE_DIR.rglob("*") if p.is_file()) + [HEADER_DIR / HEADER_NAME]
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def compile_driver(cxx: str | None = None, cache_dir: str | pathlib.Path | None = None) -> pathlib.Path:
    """The driver executable, compiled now or found in the cache. MissingToolError without a compiler."""
    cxx_path = find_compiler(cxx)
    cache = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha256(json.dumps({"compiler": [cxx_path, compiler_version(cxx_path)], "flags": CXX_FLAGS,
                                     "sources": _sources_digest()}, sort_keys=True).encode()).hexdigest()[:32]
    final = cache / f"requant-{key}"
    exe = final / "driver"
    if exe.is_file():
        return exe
    cache.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix=".build-requant-", dir=cache))
    try:
        src = work / "requant_driver.cc"
        src.write_text(DRIVER, encoding="utf-8", newline="\n")
        cmd = [cxx_path, *CXX_FLAGS, "-I", str(INCLUDE_DIR), "-I", str(HEADER_DIR), str(src), "-o",
               str(work / "driver")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            log = "\n".join(proc.stderr.strip().splitlines()[:40])
            raise InternalCheckError("native requantisation driver", f"{HEADER_NAME} did not compile with "
                                     f"{pathlib.Path(cxx_path).name} against the AIE-API emulation headers:\n{log}",
                                     "report this (the header or the emulation headers are wrong)")
        if final.exists() and not exe.is_file():  # a damaged cache entry
            shutil.rmtree(final, ignore_errors=True)
        try:
            work.rename(final)
        except OSError:  # another process built the same binary meanwhile
            if not exe.is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return exe


def _run_chunk(exe: pathlib.Path, words: list[np.ndarray], tmp: pathlib.Path, index: int) -> np.ndarray:
    src, dst = tmp / f"in{index}.bin", tmp / f"out{index}.bin"
    np.concatenate(words).astype(np.int32).tofile(src)
    proc = subprocess.run([str(exe), str(src), str(dst)], capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr.strip() or f"exit code {proc.returncode}").splitlines()[0][:300]
        raise InternalCheckError("native requantisation run", f"the driver failed: {msg}", "report this")
    out = np.fromfile(dst, dtype=np.int32).astype(np.int64)
    src.unlink(missing_ok=True)
    dst.unlink(missing_ok=True)
    return out


def run_cases(cases: Sequence[NativeCase], *, cxx: str | None = None, cache_dir: str | pathlib.Path | None = None,
              jobs: int | None = None) -> list[np.ndarray]:
    """Codes [vectors, LANES] (int64) the header computes for every case: one compiled driver, the cases batched
    into as few runs as CHUNK_WORDS allows (run ``jobs`` at a time, default: CPU count)."""
    exe = compile_driver(cxx, cache_dir)
    encoded = [_encode(c) for c in cases]
    chunks: list[list[int]] = [[]]
    size = 0
    for i, e in enumerate(encoded):
        if chunks[-1] and size + e.size > CHUNK_WORDS:
            chunks.append([])
            size = 0
        chunks[-1].append(i)
        size += e.size
    jobs = max(1, jobs or os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="nn2aie-requant-") as tmp:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            outs = list(pool.map(lambda k: _run_chunk(exe, [encoded[i] for i in chunks[k]], pathlib.Path(tmp), k),
                                 range(len(chunks)) if cases else []))
    results: list[np.ndarray] = []
    for k, idx in enumerate(chunks if cases else []):
        pos = 0
        for i in idx:
            n = cases[i].acc.shape[0] * LANES
            results.append(outs[k][pos:pos + n].reshape(-1, LANES))
            pos += n
        if pos != outs[k].size:
            raise InternalCheckError("native requantisation run", f"the driver wrote {outs[k].size} codes, expected "
                                     f"{pos}", "report this")
    return results


# -- every accumulator of the range, every channel ------------------------------------------------------------------
def _exhaustive_group(rq: Requant, group: Sequence[int], acc_tag: str, layout: str) -> tuple[NativeCase, np.ndarray]:
    """One case covering every accumulator of the range on the channels ``group`` (at most BLOCK[1]) and the flat
    index of (value i, group channel k) in its output."""
    rows, cols = BLOCK
    if layout == "rows":
        row = [group[j % len(group)] for j in range(cols)]
        lane_ch = block_lanes(row, rows)
    else:
        lane_ch = tuple(group[j % len(group)] for j in range(LANES))
    values = np.arange(rq.acc_lo, rq.acc_hi + 1, dtype=np.int64)
    n = values.size
    lanes_of = [np.flatnonzero(np.asarray(lane_ch) == c) for c in group]
    vectors = max(-(-n // lanes.size) for lanes in lanes_of)
    acc = np.full((vectors, LANES), rq.acc_lo, dtype=np.int64)
    index = np.empty((n, len(group)), dtype=np.int64)
    i = np.arange(n)
    for k, lanes in enumerate(lanes_of):
        vec, lane = i // lanes.size, lanes[i % lanes.size]
        acc[vec, lane] = values
        index[:, k] = vec * LANES + lane
    return NativeCase(rq, lane_ch, acc, acc_tag, layout=layout), index


def exhaustive_codes(requants: Sequence[Requant], *, acc_tags: Sequence[str] | None = None,
                     layouts: Sequence[str] | None = None, cxx: str | None = None,
                     cache_dir: str | pathlib.Path | None = None, jobs: int | None = None) -> list[np.ndarray]:
    """For each Requant (multiplier or table) the codes [acc_hi - acc_lo + 1, channels] the header computes for
    every accumulator of its range (row i: accumulator acc_lo + i) on every channel, all in one batched run.
    ``acc_tags`` / ``layouts``: per Requant (default acc32, "rows")."""
    acc_tags = list(acc_tags) if acc_tags is not None else ["acc32"] * len(requants)
    layouts = list(layouts) if layouts is not None else ["rows"] * len(requants)
    if len(acc_tags) != len(requants) or len(layouts) != len(requants):
        raise ValueError("one accumulator tag and one layout per Requant")
    cases, where = [], []
    for r, (rq, tag, layout) in enumerate(zip(requants, acc_tags, layouts, strict=True)):
        for g in range(0, rq.channels, BLOCK[1]):
            group = list(range(g, min(g + BLOCK[1], rq.channels)))
            case, index = _exhaustive_group(rq, group, tag, layout)
            cases.append(case)
            where.append((r, group, index))
    outs = run_cases(cases, cxx=cxx, cache_dir=cache_dir, jobs=jobs)
    grids = [np.empty((rq.acc_hi - rq.acc_lo + 1, rq.channels), dtype=np.int64) for rq in requants]
    for (r, group, index), out in zip(where, outs, strict=True):
        grids[r][:, group] = out.ravel()[index]
    return grids


def constant_rows(rq: Requant) -> int:
    """int32 constants per output channel in ``tile_constants``' layout (the C++ kernels' stride between column
    blocks is this many rows of MMUL_N): multiplier and offset, then an accumulator and a delta per correction slot;
    or a table's base code and one threshold per level."""
    if rq.kind == "multiplier":
        return 2 + 2 * rq.correction_slots
    return 1 + len(rq.table_levels()[1])


def tile_constants(rq: Requant, channels: int, n_start: int, n_slice: int, mn: int, where: str) -> np.ndarray:
    """The int32 requantisation constants of a tile whose output columns are ``[n_start, n_start + n_slice)`` of
    a layer with ``channels`` channels, column block by column block (``mn`` channels each; padding columns repeat
    the last channel): a multiplier's M_n then B'_n (then the correction slots: accumulators and deltas), or a
    table's base codes then its threshold rows (the layer's level and slot counts on every tile, so that one
    kernel class serves them all). Shared by the dense and conv kernels (nn2aie_requant.h reads this layout)."""
    cols = [min(c, channels - 1) for c in range(n_start, n_start + n_slice)]
    blocks = n_slice // mn
    if rq.kind == "multiplier":
        sub = rq.select(cols)
        parts = [np.asarray(sub.multipliers, dtype=np.int64).reshape(blocks, mn),
                 np.asarray(sub.offsets, dtype=np.int64).reshape(blocks, mn)]
        if rq.corrections:  # unused slots never match (acc_hi + 1, delta 0)
            at, delta = sub.correction_planes()
            pad = rq.correction_slots - at.shape[0]
            if pad > 0:
                at = np.concatenate([at, np.full((pad, at.shape[1]), rq.acc_hi + 1, dtype=np.int64)])
                delta = np.concatenate([delta, np.zeros((pad, delta.shape[1]), dtype=np.int64)])
            for j in range(at.shape[0]):
                parts += [at[j].reshape(blocks, mn), delta[j].reshape(blocks, mn)]
    else:
        base, levels = table_int32(rq.select(range(channels)))
        count = levels.shape[0]
        parts = [base[cols].astype(np.int64).reshape(blocks, mn),
                 levels[:, cols].astype(np.int64).reshape(count, blocks, mn).transpose(1, 0, 2).reshape(blocks, -1)]
    out = np.concatenate(parts, axis=1).reshape(-1)
    if out.size and (out.min() < -(1 << 31) or out.max() >= 1 << 31):
        raise InternalCheckError(where, "a requantisation constant does not fit int32", "report this")
    return out.astype(np.int32)

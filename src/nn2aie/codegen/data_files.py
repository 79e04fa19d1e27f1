"""PLIO text files: what the simulators read (inputs) and what the design must write (expected outputs).

Format (UG1076 "TXT file format"): one PLIO word per line, its elements as space-separated decimal integers, so
a line holds ``plio_bits / element_bits`` values (16 int8 values on a 128-bit PLIO). aiesimulator adds lines
such as ``T 1234 ns`` and ``TLAST``; readers skip every line whose first token is not an integer.

Stream order: a PLIO carries the column slice ``[col_start, col_start + row_width)`` of the tensor, row after
row (row-major), graph iteration after graph iteration (``batch`` rows each). Events are padded with zero rows
to a whole number of iterations; columns past the tensor's width are zero. This is the order the PLIO side of
the memory-tile descriptors in the plan (and ``nn2aie.sim.emulator``) assumes.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import numpy as np

from nn2aie.errors import BadFileError, InternalCheckError
from nn2aie.ir.execution import ceil_div
from nn2aie.ir.physical import PhysicalPlan

_ELEMENT_BITS = {"int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32, "uint32": 32}
_RANGES = {name: ((0, (1 << b) - 1) if name.startswith("u") else (-(1 << (b - 1)), (1 << (b - 1)) - 1))
           for name, b in _ELEMENT_BITS.items()}


@dataclass(frozen=True)
class PlioSpec:
    """Everything needed to write or read one PLIO data file."""

    name: str
    direction: str  # "in" | "out"
    dtype: str
    bits: int
    col_start: int  # first tensor column carried
    row_width: int  # columns per row on the wire
    file: str  # path relative to the project root, e.g. data/plio_in0.txt
    tensor: str = ""  # the graph input or output it carries


def plio_specs(plan: PhysicalPlan) -> list[PlioSpec]:
    """The plan's PLIOs (plan order) with the tensor columns each one carries."""
    col_start: dict[str, int] = {}
    for sb in plan.shared_buffers:
        for access in sb.writers + sb.readers:
            for ep in access.endpoints:
                if ep.kind == "plio":
                    col_start[ep.name] = sb.col_start
    specs = []
    for p in plan.plios:
        if p.name not in col_start:
            raise InternalCheckError(f"PLIO {p.name}", "is not connected to a memory-tile buffer", "report this")
        specs.append(PlioSpec(p.name, p.direction, p.dtype, p.bits, col_start[p.name], p.row_width, p.file,
                              p.tensor))
    return specs


def values_per_line(bits: int, dtype: str) -> int:
    if dtype not in _ELEMENT_BITS:
        raise InternalCheckError(f"PLIO data type {dtype}", "has no text-file format", "report this")
    per = bits // _ELEMENT_BITS[dtype]
    if per < 1 or bits % _ELEMENT_BITS[dtype]:
        raise InternalCheckError(f"PLIO of {bits} bits", f"cannot carry whole {dtype} elements", "report this")
    return per


def iterations(events: int, batch: int) -> int:
    """Graph iterations needed for ``events`` rows (at least one, like the emulator)."""
    return max(1, ceil_div(events, batch))


def plio_rows(codes: np.ndarray, batch: int, col_start: int, row_width: int) -> np.ndarray:
    """[events, width] codes -> [iterations * batch, row_width] int64: the rows one PLIO carries.

    Rows past ``events`` and columns past ``width`` are zero.
    """
    x = np.asarray(codes)
    if x.ndim != 2:
        raise InternalCheckError("PLIO rows", f"expected a 2-D [events, columns] array, got shape {list(x.shape)}",
                                 "report this")
    rows = iterations(x.shape[0], batch) * batch
    out = np.zeros((rows, row_width), dtype=np.int64)
    avail = max(0, min(row_width, x.shape[1] - col_start))
    out[: x.shape[0], :avail] = x[:, col_start:col_start + avail]
    return out


def format_plio_text(values: np.ndarray, dtype: str, bits: int) -> str:
    """Flat values (stream order) -> file text, one PLIO word per line."""
    flat = np.asarray(values, dtype=np.int64).reshape(-1)
    per = values_per_line(bits, dtype)
    if flat.size % per:
        raise InternalCheckError("PLIO data", f"{flat.size} {dtype} values do not fill whole {bits}-bit words",
                                 "report this (rows are padded to 32-bit words and batches to 4 rows)")
    lo, hi = _RANGES[dtype]
    if flat.size and (flat.min() < lo or flat.max() > hi):
        raise InternalCheckError("PLIO data", f"values outside [{lo}, {hi}] of {dtype}", "report this")
    lines = [" ".join(str(int(v)) for v in row) for row in flat.reshape(-1, per)]
    return "".join(line + "\n" for line in lines)


def write_plio_file(path: pathlib.Path, values: np.ndarray, dtype: str, bits: int) -> None:
    pathlib.Path(path).write_text(format_plio_text(values, dtype, bits), encoding="ascii", newline="\n")


def parse_plio_text(text: str, dtype: str, where: str = "PLIO data") -> np.ndarray:
    """File text -> flat int64 values; skips blank lines and simulator markers (``T 12 ns``, ``TLAST``)."""
    if dtype not in _RANGES:
        raise InternalCheckError(f"PLIO data type {dtype}", "has no text-file format", "report this")
    values: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens or not _is_int(tokens[0]):
            continue
        try:
            values.extend(int(t) for t in tokens)
        except ValueError:
            raise BadFileError(f"{where} line {number}", f"not a list of integers: {line[:60]!r}",
                               "use one PLIO word per line, space-separated decimal values") from None
    out = np.asarray(values, dtype=np.int64)
    lo, hi = _RANGES[dtype]
    if out.size and (out.min() < lo or out.max() > hi):
        raise BadFileError(where, f"values outside [{lo}, {hi}] of {dtype}", "check the PLIO data type")
    return out


def read_plio_file(path: pathlib.Path | str, dtype: str) -> np.ndarray:
    """A PLIO text file (ours or a simulator's output) -> flat int64 values in stream order."""
    p = pathlib.Path(path)
    try:
        text = p.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise BadFileError(str(p), f"cannot be read ({exc.strerror})", "run the simulator first") from None
    return parse_plio_text(text, dtype, str(p))


def _is_int(token: str) -> bool:
    return token.lstrip("+-").isdigit()


def rows_from_values(values: np.ndarray, row_width: int) -> np.ndarray:
    """Flat stream values -> [rows, row_width] (the inverse of ``plio_rows(...).reshape(-1)``)."""
    flat = np.asarray(values, dtype=np.int64).reshape(-1)
    if row_width < 1 or flat.size % row_width:
        raise BadFileError("PLIO data", f"{flat.size} values are not whole rows of {row_width}",
                           "the file is truncated or belongs to another design")
    return flat.reshape(-1, row_width)


def gather_columns(specs: list[PlioSpec], values: dict[str, np.ndarray], width: int,
                   events: int | None = None) -> np.ndarray:
    """Reassemble a [rows, width] tensor from the flat values of several PLIOs (keyed by PLIO name)."""
    parts = [(s, rows_from_values(values[s.name], s.row_width)) for s in specs]
    n_rows = {r.shape[0] for _, r in parts}
    if len(n_rows) != 1:
        raise BadFileError("PLIO data", f"the PLIOs carry different row counts {sorted(n_rows)}",
                           "the simulation was cut short; rerun it")
    rows = n_rows.pop()
    out = np.zeros((rows, max([width] + [s.col_start + s.row_width for s in specs])), dtype=np.int64)
    for s, r in parts:
        out[:, s.col_start:s.col_start + s.row_width] = r
    out = out[:, :width]
    return out if events is None else out[:events]

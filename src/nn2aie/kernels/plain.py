"""Shared building blocks of the families whose tiles read and write plain row-major windows (eltwise, view,
reduce): a window per port (no block layout), at most one parameter array per tile, one kernel class per op.

Not a family (nothing here is registered): each family still owns its semantics, template, cost and resources;
this module holds what would otherwise be the same code three times -- the memory map, the column split, the
native co-simulation driver and its file protocol, the trace of a tile's windows.

C++ contract of a plain kernel class (``{cls}`` per op, one instance per tile)::

    class {cls} {                                  // header kernels/<family>_l<i>.h
      p_t (&p)[P_SIZE];                            // only when the op has a parameter array
     public:
      {cls}(p_t (&p_i)[P_SIZE]);                   // or a default constructor
      void run(adf::input_buffer<in0_t, adf::extents<IN0_SIZE>>& in0, [... in1,]
               adf::output_buffer<o_t, adf::extents<OUT_SIZE>>& out);
    };

The namespace of the op (``{ns}``) defines ``in0_t``/``in1_t``/``o_t``/``p_t`` and the sizes; the driver below
only uses those names.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jinja2
import numpy as np

from nn2aie.devices import Device
from nn2aie.errors import DoesNotFitError, IllegalConfigError, InternalCheckError
from nn2aie.ir.execution import ceil_div
from nn2aie.ir.physical import BufferAlloc, Kernel, SpatialView, dtype_bytes
from nn2aie.kernels.family import NativeRun, PortSpec
from nn2aie.kernels.tile_memory import allocate

ALIGN = 32  # bytes: vector loads and stores are 256-bit aligned (AM020)
CXX_TYPES = {"int8": "int8", "uint8": "uint8", "int16": "int16", "uint16": "uint16", "int32": "int32"}
STD_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "uint16": "uint16_t", "int32": "int32_t"}
BITS = {"int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32}

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("nn2aie.kernels", "templates"),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    autoescape=False,
)


def container_of(bits: int, signed: bool) -> str:
    return f"{'' if signed else 'u'}int{bits}"


def is_signed(dtype: str) -> bool:
    return not dtype.startswith("u")


# -- columns and memory ------------------------------------------------------------------------------------------
def column_slices(width: int, parts: int, align: int) -> list[tuple[int, int]] | None:
    """``parts`` equal slices of ``align``-multiple width covering ``width`` columns (the last may extend into
    padding), every slice starting inside the tensor; None when ``parts`` cannot all be non-empty."""
    per = ceil_div(ceil_div(width, parts), align) * align
    if (parts - 1) * per >= width:
        return None
    return [(p * per, per) for p in range(parts)]


def validate_cas_num(layer: str, override: dict) -> None:
    """The ``cas_num`` override of the plain families must be a positive whole number of tiles."""
    if "cas_num" in override and (type(override["cas_num"]) is not int or override["cas_num"] < 1):
        raise IllegalConfigError(f"override for layer {layer}", f"cas_num {override['cas_num']!r} is not a "
                                 "positive integer", "give cas_num as a whole number of tiles, e.g. 2")


def tile_budget(device: Device) -> int:
    """Bytes of a tile's data memory left for an op's buffers (stack, heap and alignment slack taken off)."""
    return device.data_memory_bytes - int(device.fact("stack_bytes_default")) - \
        int(device.fact("heap_bytes_default")) - 8 * ALIGN


def row_pieces_limit(device: Device) -> int:
    """Tiles a whole-row op shares its rows over at most: a memory tile's DMA ports per buffer."""
    return min(device.fact("memtile_dma_channels").values())


def share_rows(op: str, total: int, per_event: int, width: int, need: Callable[[int], int], device: Device,
               override: dict | None) -> tuple[int, int]:
    """``(rows per tile, pieces)`` for an op whose tiles each take whole rows of its ``total`` rows: the fewest
    pieces (whole events or bands, ``piece_rows``) whose buffers (``need(rows)`` bytes) fit a tile, or the
    user's ``cas_num``; typed refusals with the sizes."""
    budget = tile_budget(device)
    forced = int(override["cas_num"]) if override and "cas_num" in override else None
    limit = row_pieces_limit(device)
    for pieces in [forced] if forced else range(1, limit + 1):
        rows = total if pieces == 1 else piece_rows(total, per_event, pieces)
        if rows is None:
            if forced:
                raise IllegalConfigError(f"override for layer {op}", f"cas_num {pieces} does not share {total} "
                                         "rows into equal pieces of whole events or bands (multiples of 4 rows)",
                                         "use a divisor of the batch, e.g. 2")
            continue
        if need(rows) <= budget:
            return rows, pieces
        if forced:
            raise DoesNotFitError(f"op {op}", f"{pieces} tile(s) of {rows} rows x {width} columns need "
                                  f"{need(rows)} B, a tile has {budget} B free",
                                  "use more tiles (cas_num) or a smaller batch")
    raise DoesNotFitError(f"op {op}", f"{total} rows of {width} columns do not fit a tile, nor shared out over up "
                          f"to {limit} tiles", "use a smaller batch")


def grow_rows(rows: int, pieces: int, per_event: int, device: Device) -> dict | None:
    """The DSE step of a whole-row op: twice the pieces, where they still share the rows evenly."""
    more = pieces * 2
    if more <= row_pieces_limit(device) and piece_rows(rows * pieces, per_event, more):
        return {"cas_num": more}
    return None


def row_ports(rows: int, per_event: int, pieces: int, piece: int, width: int, in_dtype: str,
              out_dtype: str) -> list[PortSpec]:
    """One input and one output port of whole rows ``[rows, width]`` (piece ``piece`` of ``pieces``)."""
    view = piece_view(rows, per_event, pieces, piece)
    return [PortSpec("in0", "in", 0, 0, width, None, in_dtype, rows, view),
            PortSpec("out", "out", 0, 0, width, None, out_dtype, rows, view)]


def row_port_slices(rows: int, per_event: int, pieces: int, width: int) -> list[tuple]:
    """``port_slices`` of a whole-row op: one slice of every column, one window per piece."""
    if pieces == 1:
        return [(0, width)]
    views = [piece_view(rows, per_event, pieces, p) for p in range(pieces)]
    return [(0, width, p, v.events if v is not None else None) for p, v in enumerate(views)]


def word_padded_width(columns: int, dtype: str) -> int:
    """Columns of a row padded to whole 32-bit words (the DMA granularity)."""
    per_word = max(1, 4 // dtype_bytes(dtype))
    return ceil_div(columns, per_word) * per_word


def piece_rows(total: int, per_event: int, pieces: int) -> int | None:
    """Rows of one of ``pieces`` equal pieces of an iteration's ``total`` rows that are whole events or equal bands
    of one event's ``per_event`` rows (a multiple of 4 rows), else None."""
    if total % pieces:
        return None
    rows = total // pieces
    if rows % 4 or not (rows % per_event == 0 or per_event % rows == 0):
        return None
    return rows


def piece_view(rows: int, per_event: int, pieces: int, piece: int) -> SpatialView | None:
    """Row piece ``piece`` (of ``rows`` rows) as a window of each event's rows (seen as a 1 x rows image): whole
    events or a band; None when the rows are not shared out."""
    if pieces == 1:
        return None
    if rows >= per_event:
        count = rows // per_event
        return SpatialView((1, per_event), (0, 0), (1, per_event), (piece * count, count))
    bands = per_event // rows
    return SpatialView((1, per_event), (0, piece % bands * rows), (1, rows), (piece // bands, 1))


def memory_map(buffers: list[tuple[str, int]], device: Device, where: str) -> list[BufferAlloc]:
    """Bank-aware, 32-byte aligned allocation of the named buffers (with the tile's stack and heap) in the tile's
    own data memory (kernels/tile_memory.py)."""
    items = list(buffers) + [("stack", int(device.fact("stack_bytes_default"))),
                             ("heap", int(device.fact("heap_bytes_default")))]
    return allocate(items, device, where, "use a smaller batch, or more tiles for this op (cas_num)")


def port_buffers(ports: list[PortSpec], skip: frozenset[str]) -> list[tuple[str, int]]:
    """Ping and pong buffers of every port, in port order, without those in ``skip``."""
    out = []
    for p in ports:
        size = p.rows * p.width * dtype_bytes(p.dtype)
        out += [(n, size) for n in (f"{p.name}_ping", f"{p.name}_pong") if n not in skip]
    return out


def window_bytes(ports: list[PortSpec]) -> int:
    return sum(2 * p.rows * p.width * dtype_bytes(p.dtype) for p in ports)


# -- emulation ---------------------------------------------------------------------------------------------------
def trace_key(kernel: Kernel, port: PortSpec, first: bool) -> str:
    """Trace key of a port's window: the kernel's name for its first input / its output, ``kernel.port`` else."""
    return kernel.name if first else f"{kernel.name}.{port.name}"


def record(trace: Any, kernel: Kernel, inputs: list[tuple[PortSpec, np.ndarray]], output: np.ndarray,
           iters: int) -> None:
    """Windows of one tile in buffer order (plain rows: the matrix row-major per graph iteration)."""
    for i, (spec, mat) in enumerate(inputs):
        trace.inputs[trace_key(kernel, spec, i == 0)] = np.asarray(mat, dtype=np.int64).reshape(iters, -1)
    trace.outputs[kernel.name] = np.asarray(output, dtype=np.int64).reshape(iters, -1)


# -- codegen -----------------------------------------------------------------------------------------------------
def format_array(values: np.ndarray, per_line: int = 16, indent: str = "    ") -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return ",\n".join(indent + line for line in lines)


def param_header(path: str, comment: str, dtype: str, arrays: list[tuple]) -> str:
    """A parameter header: one ``alignas(32) static const`` array per entry, (symbol, note, values) of ``dtype``
    or (symbol, note, values, its own dtype)."""
    guard = "NN2AIE_" + "".join(c if c.isalnum() else "_" for c in path.upper())
    lines = ["// Generated by nn2aie: do not edit by hand.", f"// {comment}", f"#ifndef {guard}", f"#define {guard}",
             "", "#include <cstdint>", ""]
    for symbol, note, values, *own in arrays:
        lines.append(f"// {note}")
        t = STD_TYPES[own[0] if own else dtype]
        lines.append(f"alignas(32) static const {t} {symbol}[{np.asarray(values).size}] = {{")
        lines.append(format_array(values))
        lines.append("};")
        lines.append("")
    lines.append(f"#endif  // {guard}")
    return "\n".join(lines) + "\n"


# -- native co-simulation ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DriverSpec:
    """What the shared driver needs of an op's kernel class."""

    ns: str  # the op's C++ namespace
    kernel_header: str
    kernel_source: str
    param_header: str | None
    inputs: int  # input buffer ports (in0, in1, ...)
    has_param: bool
    # (element type, size) of each constructor array, C++ expressions in the driver (default: the op's one p_t
    # array of P_SIZE when has_param); e.g. (("L::w_t", "L::W_SIZE"), ("int32", "L::M_SLICE"))
    param_arrays: tuple[tuple[str, str], ...] = ()

    @property
    def arrays(self) -> tuple[tuple[str, str], ...]:
        if self.param_arrays:
            return self.param_arrays
        return (("L::p_t", "L::P_SIZE"),) if self.has_param else ()

    @property
    def ins(self) -> tuple[str, ...]:
        return tuple(f"in{i}" for i in range(self.inputs))


def driver_source(spec: DriverSpec, entries: list[dict]) -> str:
    """The C++ driver running each kernel instance of ``entries`` (dicts with index, name, col, row, role,
    type_name, ctor_args and params as graph.h creates the kernel) on files."""
    for entry in entries:
        if len(entry["params"]) != len(spec.arrays):
            raise InternalCheckError(f"kernel {entry['name']}", f"unexpected parameters {entry['params']}",
                                     "report this")
    return _ENV.get_template("plain_driver.cc.j2").render(s=spec, entries=entries)


def run_spec(kernel: Kernel, ports: list[PortSpec], trace: Any, iters: int, stem: pathlib.Path) -> NativeRun:
    """Write the tile's input windows for ``iters`` graph iterations; what the driver writes and what to compare."""
    ins = [p for p in ports if p.direction == "in"]
    out = next(p for p in ports if p.direction == "out")
    args, files = [], []
    out_path = stem.with_suffix(".out")
    args.append(str(out_path))
    files.append(out_path)
    for i, p in enumerate(ins):
        window = trace.inputs[trace_key(kernel, p, i == 0)].reshape(iters, -1)
        codes = window.astype(np.dtype(p.dtype))
        if not np.array_equal(codes, window):
            raise InternalCheckError(f"kernel {kernel.name}", f"input window values do not fit {p.dtype}",
                                     "report this")
        path = stem.with_suffix(f".in{i}")
        codes.tofile(path)
        args.append(str(path))
        files.append(path)
    want = trace.outputs[kernel.name].reshape(-1).astype(np.int64)
    return NativeRun(args, out_path, np.dtype(out.dtype), want, files, "buffer")


def position(port: PortSpec, element: int) -> str:
    row, col = divmod(element, port.width)
    return f"window row {row % port.rows}, column {col} = tensor column {port.start + col}"


def epilogue_args(epi: Any, dtype: str) -> str:
    """Template arguments ``SHIFT, APPLY_LO, LO, APPLY_HI, HI, WRAP_BITS`` of a kernel's ``finish`` step; a clamp
    the container's range already implies is skipped (as in the dense kernel)."""
    bits, signed = BITS[dtype], is_signed(dtype)
    c_hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    c_lo = -(1 << (bits - 1)) if signed else 0
    apply_lo = epi.clamp_lo > c_lo
    apply_hi = epi.clamp_hi < c_hi
    return (f"{epi.shift}, {str(apply_lo).lower()}, {epi.clamp_lo}, {str(apply_hi).lower()}, {epi.clamp_hi}, "
            f"{epi.wrap_bits}")

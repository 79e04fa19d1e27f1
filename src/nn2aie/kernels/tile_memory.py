"""Bank-aware allocation of a compute tile's data memory (shared by every family's ``memory_map``).

An AIE-ML tile's data memory is ``data_memory_banks`` banks of ``bank_bytes`` each (catalog). Two accesses to one
bank in the same cycle conflict and stall the core (AM020, memory module; UG1603 lists bank conflicts among the
memory stalls). The kernel loads its activation window and its weights every cycle of its inner loop, while the
DMA writes the next ping/pong window (and drains the previous output). So the allocator:

- never lets a buffer that fits in one bank straddle a bank boundary (nor the stack or heap);
- keeps apart, in this order of priority, the weights and each activation input buffer, the two halves of every
  ping/pong pair, and the input and output buffers (``APART``): each buffer goes to the bank where it meets the
  fewest buffers it should avoid, then the lowest bank (deterministic);
- places a buffer larger than a bank from a bank boundary over the fewest banks;
- falls back to the tight first-fit packing (which may straddle and share banks) only when the bank-aware layout
  does not fit, so a design that fits is never refused for it. ``conflicts`` names what could not be kept apart
  (the cost model's penalty reads it).

Buffers are named as the families name them: ``weights``, ``bias``, ``param``, ``<port>_ping`` / ``<port>_pong``
(ports ``in``, ``in<i>``, ``out``), ``stack``, ``heap``.
"""

from __future__ import annotations

from nn2aie.devices import Device
from nn2aie.errors import DoesNotFitError
from nn2aie.ir.execution import ceil_div
from nn2aie.ir.physical import BufferAlloc

ALIGN = 32  # bytes: 256-bit vector loads are aligned (AM020, AIE-API)


def _kind(name: str) -> str:
    if name in ("weights", "param", "lut_ab", "lut_cd"):
        return "weights"
    if name.startswith("in") and name.endswith(("_ping", "_pong")):
        return "input"
    if name.startswith("out") and name.endswith(("_ping", "_pong")):
        return "output"
    return "other"


def _pair(name: str) -> str | None:
    """The other half of a ping/pong buffer."""
    if name.endswith("_ping"):
        return name[:-5] + "_pong"
    if name.endswith("_pong"):
        return name[:-5] + "_ping"
    return None


def should_avoid(a: str, b: str) -> int:
    """How much buffers ``a`` and ``b`` should not share a bank (0: no matter; higher first)."""
    ka, kb = _kind(a), _kind(b)
    if {a, b} == {"lut_ab", "lut_cd"}:
        return 3  # the two copies of a table serve the 4 parallel accesses of a lookup only from two banks
    if {ka, kb} == {"weights", "input"}:
        return 3  # both loaded in the same inner-loop cycle
    if _pair(a) == b:
        return 2  # the DMA writes one half while the kernel reads the other
    if {ka, kb} == {"input", "output"}:
        return 1
    return 0


def _banks(offset: int, size: int, bank: int) -> range:
    return range(offset // bank, (offset + max(size, 1) - 1) // bank + 1)


def conflicts(allocs: list[BufferAlloc], bank: int) -> list[tuple[str, str]]:
    """Pairs of buffers that should be apart (``should_avoid``) but share a bank."""
    out = []
    for i, a in enumerate(allocs):
        for b in allocs[i + 1:]:
            if should_avoid(a.name, b.name) and set(_banks(a.offset, a.size, bank)) & set(_banks(b.offset, b.size,
                                                                                                     bank)):
                out.append((a.name, b.name))
    return out


def straddles(a: BufferAlloc, bank: int) -> bool:
    """A buffer that fits in one bank but crosses a bank boundary."""
    return a.size <= bank and len(_banks(a.offset, a.size, bank)) > 1


def _first_fit(items: list[tuple[str, int]], bank: int) -> list[BufferAlloc]:
    allocs, offset = [], 0
    for name, size in items:
        offset = ceil_div(offset, ALIGN) * ALIGN
        allocs.append(BufferAlloc(name, offset, size, offset // bank))
        offset += size
    return allocs


def _bank_aware(items: list[tuple[str, int]], bank: int, n_banks: int) -> list[BufferAlloc] | None:
    used = [0] * n_banks  # bytes used from the start of each bank (buffers are packed from each bank's base)
    placed: list[BufferAlloc] = []
    # the most constrained first: larger buffers, weights, then the order given (stable)
    order = sorted(range(len(items)), key=lambda i: (-(items[i][1] > bank), _kind(items[i][0]) != "weights",
                                                    _kind(items[i][0]) != "input", i))
    result: dict[int, BufferAlloc] = {}
    for i in order:
        name, size = items[i]
        if size > bank:  # from a bank boundary over the fewest banks, all of them still empty
            span = ceil_div(size, bank)
            start = next((b for b in range(n_banks - span + 1) if not any(used[b:b + span])), None)
            if start is None:
                return None
            alloc = BufferAlloc(name, start * bank, size, start)
            for b in range(start, start + span):
                used[b] = min(bank, size - (b - start) * bank)
            used[start + span - 1] = ceil_div(used[start + span - 1], ALIGN) * ALIGN
        else:
            best = None
            for b in range(n_banks):
                offset = ceil_div(used[b], ALIGN) * ALIGN
                if offset + size > bank:
                    continue
                cost = sum(should_avoid(name, p.name) ** 2 for p in placed if b in _banks(p.offset, p.size, bank))
                key = (cost, b)
                if best is None or key < best[0]:
                    best = (key, b, offset)
            if best is None:
                return None
            _, b, offset = best
            alloc = BufferAlloc(name, b * bank + offset, size, b)
            used[b] = offset + size
        placed.append(alloc)
        result[i] = alloc
    return [result[i] for i in range(len(items))]


def allocate(items: list[tuple[str, int]], device: Device, where: str, hint: str) -> list[BufferAlloc]:
    """Offsets of the named buffers in the tile's data memory (see the module docstring); ``hint`` says what to do
    when they do not fit at all."""
    bank = device.bank_bytes
    n_banks = int(device.fact("data_memory_banks"))
    allocs = _bank_aware(items, bank, n_banks)
    if allocs is None:
        allocs = _first_fit(items, bank)
        end = max((a.offset + a.size for a in allocs), default=0)
        if end > device.data_memory_bytes:
            raise DoesNotFitError(where, f"needs {end} B of data memory, the tile has {device.data_memory_bytes} B",
                                  hint)
    return allocs

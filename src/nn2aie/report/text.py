"""Plain-text reports: the layer table and a picture of the placement on the array."""

from __future__ import annotations

import string

from nn2aie.devices import get_device
from nn2aie.ir.physical import PhysicalPlan

_LETTERS = string.ascii_uppercase + string.ascii_lowercase + string.digits


def layer_letter(index: int) -> str:
    return _LETTERS[index % len(_LETTERS)]


def placement_picture(plan: PhysicalPlan, max_columns: int | None = None) -> str:
    """Compute rows top (highest) to bottom, then memory-tile rows (M) and the PLIO row (I/O)."""
    dev = get_device(plan.device)
    cols = dev.columns
    used_cols = max([k.col for k in plan.kernels] + [sb.col for sb in plan.shared_buffers] + [0]) + 1
    shown = min(cols, max(used_cols + 1, 8) if max_columns is None else max_columns)
    grid = [["." for _ in range(shown)] for _ in range(dev.compute_rows)]
    index = {e.op: i for i, e in enumerate(plan.layers)}
    for k in plan.kernels:
        if k.col < shown:
            grid[k.row][k.col] = layer_letter(index[k.layer])
    mem = [["." for _ in range(shown)] for _ in range(dev.memtile_rows)]
    for sb in plan.shared_buffers:
        if sb.col < shown:
            mem[sb.row][sb.col] = "M"
    io = ["." for _ in range(shown)]
    for p in plan.plios:
        if 0 <= p.col < shown:
            io[p.col] = "i" if p.direction == "in" and io[p.col] == "." else ("o" if io[p.col] == "." else "x")
    lines = [f"compute row {r:>2} | " + " ".join(grid[r]) for r in reversed(range(dev.compute_rows))]
    lines += [f"memtile row {r:>2} | " + " ".join(mem[r]) for r in reversed(range(dev.memtile_rows))]
    lines.append("PLIO (shim)    | " + " ".join(io))
    lines.append("column         | " + " ".join(str(c % 10) for c in range(shown)))
    legend = ", ".join(f"{layer_letter(i)}={e.op}" for i, e in enumerate(plan.layers))
    lines.append(f"legend: {legend}; M=memory-tile buffer; i/o=PLIO in/out"
                 + (f"; columns {shown}..{cols - 1} unused" if shown < cols else ""))
    return "\n".join(lines)


def placement_summary(plan: PhysicalPlan, project_dir: str | None = None) -> str:
    """One line on the placement (method, wire length, bound, gap), the tightest resources, and the picture."""
    rep = plan.placement
    parts = []
    if rep:
        parts.append(f"placement {rep['method']}: wire length {rep['wire_length']} (lower bound {rep['lower_bound']}, "
                     f"gap {100 * rep['gap']:.1f} %)")
    tight = sorted(plan.resources.items(), key=lambda kv: -kv[1]["used"] / kv[1]["capacity"])[:2]
    if tight:
        parts.append("tightest resources: " + ", ".join(f"{rule} {u['used']}/{u['capacity']}" for rule, u in tight))
    if project_dir is not None:
        parts.append(f"picture: {project_dir}/report/placement.png (.svg)")
    return "; ".join(parts)


def performance_summary(perf: dict) -> str:
    """The modelled throughput and latency with the assumptions they rest on (one paragraph)."""
    a = perf["assumptions"]
    return (f"modelled: {perf['events_per_s']:,} events/s (interval {perf['interval_cycles']} cycles per "
            f"{a['batch']} events), first-event latency {perf['latency_us']} us, {perf['tops']} TOPS; bottleneck "
            f"{perf['bottleneck']} ({perf['bottleneck_kind']}); assumes AIE {a['aie_clock_mhz']:g} MHz, "
            f"{'/'.join(map(str, a['plio_bits']))}-bit PLIO at {'/'.join(f'{f:g}' for f in a['pl_clock_mhz'])} MHz, "
            "cost model calibrated on AMD's GEMM measurements (kernels/dense/cost.py), hand-over overheads fitted on "
            "public aiesimulator latencies (benchmarks/aiesim_compare.py)")

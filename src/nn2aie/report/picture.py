"""Placement picture of a physical plan (PNG and SVG), written with every project.

The whole array is drawn: compute tiles coloured by layer (one letter per layer rectangle), memory tiles holding a
shared buffer (grey), the interface row with the PLIO columns, cascade hops (west -> east, a dot at the receiver)
and the DMA
streams between memory tiles and compute tiles (thin lines; writes and reads in two colours). Output is
deterministic (no dates or software versions in the files, fixed SVG ids), so projects stay byte-identical.
matplotlib is imported only when a picture is drawn.
"""

from __future__ import annotations

import io

from nn2aie.devices import get_device
from nn2aie.ir.physical import PhysicalPlan
from nn2aie.report.text import layer_letter

_LAYER_COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
                  "#9c755f", "#bab0ac"]


def _figure(plan: PhysicalPlan):
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    dev = get_device(plan.device)
    cols, mem_rows, comp_rows = dev.columns, dev.memtile_rows, dev.compute_rows
    total_rows = 1 + mem_rows + comp_rows

    def y_of(kind: str, row: int) -> int:
        return {"shim": 0, "memtile": 1 + row, "compute": 1 + mem_rows + row}[kind]

    fig = Figure(figsize=(max(6.0, 0.32 * cols + 2.5), 0.32 * total_rows + 1.6), dpi=110)
    ax = fig.add_axes((0.03, 0.16, 0.94, 0.74))
    ax.set_xlim(-0.6, cols - 0.4)
    ax.set_ylim(-0.6, total_rows - 0.4)
    ax.set_aspect("equal")
    ax.axis("off")
    index = {e.op: i for i, e in enumerate(plan.layers)}
    busy = {(k.col, k.row): k for k in plan.kernels}
    memtiles = {(sb.col, sb.row) for sb in plan.shared_buffers}
    boxes, faces = [], []
    for c in range(cols):
        boxes.append(Rectangle((c - 0.45, -0.45), 0.9, 0.9))
        faces.append("#f4f4f4")
        for r in range(mem_rows):
            boxes.append(Rectangle((c - 0.45, y_of("memtile", r) - 0.45), 0.9, 0.9))
            faces.append("#bdbdbd" if (c, r) in memtiles else "#eeeeee")
        for r in range(comp_rows):
            k = busy.get((c, r))
            boxes.append(Rectangle((c - 0.45, y_of("compute", r) - 0.45), 0.9, 0.9))
            faces.append(_LAYER_COLOURS[index[k.layer] % len(_LAYER_COLOURS)] if k else "white")
    ax.add_collection(PatchCollection(boxes, facecolors=faces, edgecolors="#888888", linewidths=0.4))
    for i, e in enumerate(plan.layers):  # one label per layer rectangle, at its centre
        ks = plan.kernels_of(e.op)
        if ks:
            x = (min(k.col for k in ks) + max(k.col for k in ks)) / 2
            y = y_of("compute", 0) + (min(k.row for k in ks) + max(k.row for k in ks)) / 2
            ax.text(x, y, layer_letter(i), ha="center", va="center", fontsize=9, fontweight="bold", zorder=6,
                    bbox={"facecolor": "white", "alpha": 0.85, "linewidth": 0, "boxstyle": "round,pad=0.2"})
    for p in plan.plios:
        ax.text(p.col, 0, "in" if p.direction == "in" else "out", ha="center", va="center", fontsize=4.5,
                color="#1f5fa8" if p.direction == "in" else "#b03030", fontweight="bold")

    kernels = {k.name: k for k in plan.kernels}
    chains = {(k.layer, k.chain, k.position): k for k in plan.kernels}
    hops = []
    for k in plan.kernels:  # cascade hops: short segments ending in a dot on the receiving side
        if k.has_cascade_in:
            prev = chains[(k.layer, k.chain, k.position - 1)]
            hops.append([(prev.col + 0.25, y_of("compute", prev.row)), (k.col - 0.25, y_of("compute", k.row))])
    ax.add_collection(LineCollection(hops, colors="black", linewidths=0.6))
    if hops:
        ax.plot([h[1][0] for h in hops], [h[1][1] for h in hops], "k.", markersize=1.5)
    writes, reads = [], []
    for sb in plan.shared_buffers:  # DMA streams between memory tiles and tiles / PLIOs
        here = (sb.col, y_of("memtile", sb.row))
        for accesses, out in ((sb.writers, writes), (sb.readers, reads)):
            for acc in accesses:
                for ep in acc.endpoints:
                    if ep.kind == "kernel":
                        k = kernels[ep.name]
                        out.append([here, (k.col, y_of("compute", k.row))])
                    else:
                        out.append([here, (next(p.col for p in plan.plios if p.name == ep.name), 0)])
    ax.add_collection(LineCollection(writes, colors="#2a9d8f", linewidths=0.35, alpha=0.6))
    ax.add_collection(LineCollection(reads, colors="#9b5de5", linewidths=0.35, alpha=0.6))
    direct = [[(kernels[d.src].col, y_of("compute", kernels[d.src].row)),
               (kernels[d.dst].col, y_of("compute", kernels[d.dst].row))] for d in plan.direct_links]
    ax.add_collection(LineCollection(direct, colors="#e76f51", linewidths=1.0))

    rep = plan.placement
    title = (f"{plan.graph_name} on {plan.device}: {len(plan.kernels)} compute tiles, "
             f"{len(plan.shared_buffers)} memory-tile buffers, {len(plan.plios)} PLIOs")
    if rep:
        title += (f"; placement {rep.get('method')} wire length {rep.get('wire_length')} "
                  f"(bound {rep.get('lower_bound')}, gap {100 * rep.get('gap', 0):.1f} %)")
    # model names are plain text: no mathtext ("$...$" in a name would otherwise be parsed, or fail to parse)
    fig.suptitle(title, fontsize=7, parse_math=False)
    legend = "   ".join(f"{layer_letter(i)} = {e.op} ({e.cas_length}x{e.cas_num})" for i, e in enumerate(plan.layers))
    fig.text(0.03, 0.09, legend[:400], fontsize=5.5, parse_math=False)
    fig.text(0.03, 0.04, "rows bottom-up: interface (PLIO in/out), memory tiles (M), compute tiles; arrows: "
             "cascades; green: writes to memory tiles, violet: reads (broadcast), orange: direct hand-offs",
             fontsize=5)
    return fig


def placement_pictures(plan: PhysicalPlan) -> dict[str, bytes | str]:
    """{'png': bytes, 'svg': text} of the plan's placement."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _figure(plan)
    FigureCanvasAgg(fig)
    png, svg = io.BytesIO(), io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "nn2aie", "svg.fonttype": "none"}):
        fig.savefig(png, format="png", metadata={"Software": None})
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return {"png": png.getvalue(), "svg": svg.getvalue()}

"""The design-space exploration's report: every explored design, the Pareto front, and a plot."""

from __future__ import annotations

import json
import pathlib

from nn2aie import atomic
from nn2aie.dse import DesignPoint


def write_pareto(points: list[DesignPoint], front: list[DesignPoint], out: pathlib.Path,
                 model: str) -> list[pathlib.Path]:
    """pareto.json (all points, front flagged), pareto.md (the front) and pareto.png (tiles vs events/s)."""
    out.mkdir(parents=True, exist_ok=True)
    on_front = {id(p) for p in front}
    a = points[0].perf.assumptions
    rows = [p.to_json() | {"pareto": id(p) in on_front} for p in points]
    text = json.dumps({"model": model, "assumptions": a, "designs": rows}, indent=1, sort_keys=True) + "\n"
    atomic.write_file(out / "pareto.json", lambda f: f.write(text.encode()))
    lines = [f"# Design space of {pathlib.Path(model).name}", "",
             f"Modelled with nn2aie's performance model: AIE {a['aie_clock_mhz']:g} MHz, {a['plio_bits']}-bit PLIO at "
             f"{a['pl_clock_mhz']} MHz; {a['kernel_cost_model']}. {len(points)} designs explored, {len(front)} on "
             "the Pareto front (no other design has fewer tiles, lower latency and higher throughput at once).", "",
             "| tiles | batch | events/s | first-event latency (us) | TOPS | rectangles | mmul | bound by |",
             "|---:|---:|---:|---:|---:|---|---|---|"]
    lines += [f"| {p.tiles} | {p.batch} | {p.events_per_s:,.0f} | {p.latency_us:.3f} | {p.perf.tops:.2f} | "
              f"{' '.join(p.rectangles)} | {' '.join(p.mmul)} | {p.perf.bottleneck} |" for p in front]
    atomic.write_file(out / "pareto.md", lambda f: f.write(("\n".join(lines) + "\n").encode()))

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    sc = ax.scatter([p.tiles for p in points], [p.events_per_s for p in points],
                    c=[p.latency_us for p in points], cmap="viridis", s=18)
    ax.scatter([p.tiles for p in front], [p.events_per_s for p in front], facecolors="none", edgecolors="red",
               s=70, label="Pareto front")
    ax.set_xlabel("compute tiles")
    ax.set_ylabel("events/s (modelled)")
    ax.set_title(f"{pathlib.Path(model).name}: explored designs", fontsize=9)
    fig.colorbar(sc, ax=ax, label="first-event latency (us)")
    ax.legend(fontsize=7)
    atomic.write_file(out / "pareto.png", lambda f: fig.savefig(f, format="png", metadata={"Software": None}))
    return [out / "pareto.md", out / "pareto.json", out / "pareto.png"]


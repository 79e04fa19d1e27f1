"""Benchmark: placement and legality at scale on the VE2802 (38 x 8 compute tiles), in one run.

    python benchmarks/placement_scaling.py [--events 1000] [--repeats 3] [--out benchmarks/results]

Writes ``placement_scaling.md`` and ``placement_scaling.json``. For each design (ONNX QDQ MLPs from
``nn2aie.examples.builders.make_qdq_mlp``, seed 7): tiles, the layer rectangles, the CP-SAT placement's wire length,
best lower bound and gap (one worker, fixed seed, deterministic-time limit), the wall time of the placement pass
alone and of the whole compile (all passes, without writing the project; median of the repeats), the peak use of
the scarcest resources from the legality model, and whether the placed design's emulation equals onnxruntime bit
for bit on ``--events`` random inputs. Target (issue 5): placement < 2 s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import statistics
import sys
import time

import numpy as np

from nn2aie.api import Compiled, check_bit_exact
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.frontends.loader import load_model
from nn2aie.passes.pipeline import CompileOptions, compile_graph

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_common import machine  # noqa: E402

DESIGNS: dict[str, tuple[list[int], dict]] = {
    "jet tagger 16-64-32-32-5": ([16, 64, 32, 32, 5], {}),
    "MLP 384-256-200-10": ([384, 256, 200, 10], {}),
    "autoencoder 640-128x3-8-128x3-640": ([640, 128, 128, 128, 8, 128, 128, 128, 640], {}),
    "MLP 1024x4 (3 layers)": ([1024, 1024, 1024, 1024], {}),
    "MLP 1024x5 (4 layers, 256 tiles)": ([1024] * 5, {}),
    "MLP 2048-1024-1024-1024-512 (288 tiles)": ([2048, 1024, 1024, 1024, 512], {}),
    "single layer 4736x1024 on 37x8 = 296 tiles": ([4736, 1024], {"fc0_matmul": {"cas_length": 37, "cas_num": 8}}),
}
SHOWN = ("stream-switch ports", "memory-tile DMA channels", "tile DMA channels", "PLIO ports", "tile data memory")


def timed_compile(graph, options: CompileOptions) -> tuple[object, float, float]:
    """(plan, placement-pass seconds, all-passes seconds), timing each pass from the pipeline's progress calls."""
    marks: list[tuple[str, float]] = []
    start = time.perf_counter()
    plan, _ = compile_graph(graph, options, progress=lambda name: marks.append((name, time.perf_counter())))
    end = time.perf_counter()
    marks.append(("end", end))
    place = next(b - a for (n, a), (_, b) in zip(marks, marks[1:], strict=False) if n == "place")
    return plan, place, end - start


def run(name: str, sizes: list[int], overrides: dict, repeats: int, events: int) -> dict:
    loaded = load_model(make_qdq_mlp(sizes, seed=7))
    options = CompileOptions(overrides=overrides)
    runs = [timed_compile(loaded.graph, options) for _ in range(repeats)]
    plan = runs[-1][0]
    rep = plan.placement
    compiled = Compiled(loaded, plan, options)
    rng = np.random.default_rng(1)
    x = (rng.normal(0.0, 1.0, size=(events, sizes[0])) * rng.choice([0.1, 1.0, 8.0], size=(events, 1)))
    check = check_bit_exact(compiled, x.astype(np.float32))
    return {
        "design": name, "tiles": len(plan.kernels),
        "rectangles": [f"{e.cas_length}x{e.cas_num}" for e in plan.layers],
        "method": rep["method"], "status": rep["status"], "wire_length": rep["wire_length"],
        "lower_bound": rep["lower_bound"], "gap": rep["gap"], "shelf_wire_length": rep["heuristic_wire_length"],
        "placement_s": statistics.median(r[1] for r in runs), "compile_s": statistics.median(r[2] for r in runs),
        "memory_tile_buffers": len(plan.shared_buffers), "plios": len(plan.plios),
        "resources": {k: v for k, v in plan.resources.items() if k in SHOWN},
        "bit_exact": bool(check["bit_exact"]), "events": events,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = ap.parse_args()
    rows = []
    for name, (sizes, overrides) in DESIGNS.items():
        print(f"{name} ...", flush=True)
        rows.append(run(name, sizes, overrides, args.repeats, args.events))
    meta = machine() | {"date": datetime.date.today().isoformat(), "device": "xcve2802 (38 x 8 compute tiles)"}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "placement_scaling.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [
        "# Placement and legality at scale",
        "",
        f"Date {meta['date']}; machine: {meta['cpu']} ({meta['cores']} cores), Python {meta['python']}, "
        f"nn2aie {meta['nn2aie']}; target {meta['device']}. Regenerate: `python benchmarks/placement_scaling.py`.",
        "Placement: OR-Tools CP-SAT, one worker, seed 0, deterministic-time limit; wire length = for each layer edge "
        "the horizontal hops from the producer's east end to the consumer's west end plus both rectangles' heights "
        "above the memory-tile row, plus the first and last layer's heights, each term weighted by the bytes its "
        "tensor moves per graph iteration in 32-byte words (passes/placement.py). Times are wall "
        f"seconds, median of {args.repeats}; 'compile' = all passes without writing the project. Peak resource use "
        "from the legality model (passes/legality.py). Bit-exact: placed-design emulation == onnxruntime on "
        f"{args.events} inputs.",
        "",
        "| design | tiles | rectangles | wire length | bound | gap | shelf | placement (s) | compile (s) | "
        "peak stream ports | peak memtile channels | bit-exact |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        sp, mc = r["resources"].get("stream-switch ports", {}), r["resources"].get("memory-tile DMA channels", {})
        lines.append(
            f"| {r['design']} | {r['tiles']} | {' '.join(r['rectangles'])} | {r['wire_length']} | {r['lower_bound']} | "
            f"{100 * r['gap']:.1f} % | {r['shelf_wire_length']} | {r['placement_s']:.2f} | {r['compile_s']:.2f} | "
            f"{sp.get('used', '-')}/{sp.get('capacity', '-')} | {mc.get('used', '-')}/{mc.get('capacity', '-')} | "
            f"{'yes' if r['bit_exact'] else 'NO'} |")
    (out / "placement_scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

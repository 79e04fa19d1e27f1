"""Benchmark: compile time of four models and emulation throughput next to onnxruntime, in one run.

    python benchmarks/compile_and_emulation.py [--events 100000] [--repeats 3] [--out benchmarks/results]

Writes ``compile_emulation.md`` and ``compile_emulation.json``. Models are ONNX QDQ MLPs built with
``nn2aie.examples.builders.make_qdq_mlp`` (seeded int8 weights, power-of-two scales). Compile time is wall time
of the whole `nn2aie compile` path without the optional bit-exact check: frontend, all passes, and writing the
project (kernels, graph, weights, PLIO data for 64 events) to a temporary directory; the median of the repeats.
Emulation: events/s of nn2aie's placed-design emulator versus onnxruntime (CPU execution provider, default
session options, one session reused) on the same model and the same float inputs; both include input
quantisation and output dequantisation; the bit-exactness of the two outputs is checked on the same run.
Targets (issue 2): compile <= 1 s (jet tagger), <= 3 s (largest); emulation >= 0.5 x onnxruntime.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

from nn2aie.api import compile_loaded, default_inputs, write_project_atomic
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.frontends.loader import load_model

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_common import BENCHMARK_MODELS  # noqa: E402
from bench_common import machine as base_machine  # noqa: E402

MODELS = BENCHMARK_MODELS


def machine() -> dict:
    return base_machine() | {"numpy": np.__version__, "onnxruntime": ort.__version__}


def time_compile(sizes: list[int], repeats: int) -> tuple[float, int]:
    proto = make_qdq_mlp(sizes, seed=7)
    times, tiles = [], 0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / "model.onnx"
            path.write_bytes(proto.SerializeToString())
            t0 = time.perf_counter()
            compiled = compile_loaded(load_model(path))
            write_project_atomic(compiled, pathlib.Path(tmp) / "project")
            times.append(time.perf_counter() - t0)
            tiles = len(compiled.plan.kernels)
    return statistics.median(times), tiles


def time_emulation(sizes: list[int], events: int, repeats: int) -> dict:
    """Best of ``repeats`` runs of each (this VM's timings vary up to 4x between runs)."""
    proto = make_qdq_mlp(sizes, seed=7)
    compiled = compile_loaded(load_model(proto))
    x = default_inputs(compiled, events=events, seed=11)
    sessions = {}
    for label, level in (("default", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                         ("reference", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        sessions[label] = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name = sessions["default"].get_inputs()[0].name
    times: dict[str, list[float]] = {"nn2aie": [], "default": [], "reference": []}
    outs: dict[str, np.ndarray] = {}
    # nn2aie first, then each ORT configuration: onnxruntime's worker threads keep spinning after a run and
    # would steal this 2-core machine's second core from whatever is timed next
    compiled.emulate(x[:64])  # warm-up
    for _ in range(repeats):
        t0 = time.perf_counter()
        outs["nn2aie"] = compiled.emulate(x)
        times["nn2aie"].append(time.perf_counter() - t0)
    for label, sess in sessions.items():
        sess.run(None, {name: x[:64]})  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            outs[label] = sess.run(None, {name: x})[0]
            times[label].append(time.perf_counter() - t0)
    best = {k: events / min(v) for k, v in times.items()}
    return {"events": events, "nn2aie_events_per_s": best["nn2aie"], "ort_events_per_s": best["default"],
            "ort_ref_events_per_s": best["reference"], "ratio": best["nn2aie"] / best["default"],
            "ratio_ref": best["nn2aie"] / best["reference"],
            "bit_exact_vs_ort_default": bool(np.array_equal(outs["nn2aie"], outs["default"])),
            "bit_exact_vs_ort_reference": bool(np.array_equal(outs["nn2aie"], outs["reference"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = ap.parse_args()
    rows = []
    for label, sizes in MODELS.items():
        print(f"{label}: compiling ...", file=sys.stderr)
        t_compile, tiles = time_compile(sizes, args.repeats)
        print(f"{label}: emulating {args.events} events ...", file=sys.stderr)
        emu = time_emulation(sizes, args.events, args.repeats)
        rows.append({"model": label, "tiles": tiles, "compile_s": t_compile, **emu})
    result = {"date": datetime.date.today().isoformat(), "machine": machine(), "rows": rows,
              "device": "xcve2802 (nn2aie defaults: batch 4, 128-bit PLIO, <= 16 KB weights per tile)"}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compile_emulation.json").write_text(json.dumps(result, indent=1) + "\n")
    m = result["machine"]
    lines = [
        "# Compile time and emulation throughput",
        "",
        f"Date {result['date']}; machine: {m['cpu']} ({m['cores']} cores), Python {m['python']}, "
        f"NumPy {m['numpy']}, onnxruntime {m['onnxruntime']}, nn2aie {m['nn2aie']}.",
        f"Target {result['device']}. Regenerate: `python benchmarks/compile_and_emulation.py`.",
        "Compile = frontend + passes + project writing (median of repeats). Emulation = placed-design emulator vs "
        f"onnxruntime on the same {args.events} float inputs, quantisation and dequantisation included, best of "
        f"{args.repeats} runs each. ORT default = all graph optimisations (fused integer QGemm kernels); "
        "ORT reference = optimisations off (the float QDQ path nn2aie's bit-exact checks use).",
        "",
        "| model | tiles | compile (s) | nn2aie events/s | ORT default events/s | ratio | ORT reference events/s "
        "| ratio | bit-exact vs ORT reference | vs ORT default |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        ref_ok, def_ok = r["bit_exact_vs_ort_reference"], r["bit_exact_vs_ort_default"]
        lines.append(f"| {r['model']} | {r['tiles']} | {r['compile_s']:.2f} | {r['nn2aie_events_per_s']:,.0f} | "
                     f"{r['ort_events_per_s']:,.0f} | {r['ratio']:.2f} | {r['ort_ref_events_per_s']:,.0f} | "
                     f"{r['ratio_ref']:.2f} | {'yes' if ref_ok else 'NO'} | {'yes' if def_ok else 'no'} |")
    if m["vnni"]:
        cpu_note = ("optimised onnxruntime runs fused int8 kernels (VNNI on this CPU: about 4x the multiply rate of "
                    "float32 FMA)")
    else:
        cpu_note = ("optimised onnxruntime runs fused uint8 x int8 kernels; this CPU has no VNNI, and there they "
                    "saturate 16-bit pair sums (onnxruntime's documented u8s8 caveat), which is why ORT default "
                    "is not bit-exact with the model's own QDQ semantics here")
    lines += [
        "",
        "The bit-exact reference is ORT reference (the graph's own QDQ arithmetic). Why large models trail ORT's "
        "default configuration: the emulator computes each tile's dot products with float32 BLAS (exact below "
        f"2^24, proved per layer), while {cpu_note}.",
    ]
    (out / "compile_emulation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

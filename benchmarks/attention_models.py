"""Benchmark: transformer and mixer blocks (issue 15) -- tiles, modelled latency / throughput, the softmax's share,
and the measured distance to the float source.

    python benchmarks/attention_models.py [--events 2000] [--out benchmarks/results]

Models (nn2aie.examples.brevitas_models, Brevitas 8-bit fixed point, exported to QONNX, seeded): self-attention
blocks (1 head over 16 particles; 4 heads over 32, the issue's reference block) and a 16 x 16 MLP-Mixer jet tagger
with two mixer blocks. Each is compiled for the VE2802 at batch 1 and 4 with nn2aie's automatic plan, and the
attention blocks also with their softmax shared out over 4 tiles (``--config`` override ``cas_num``). Latency and
throughput are modelled (perf/model.py: the kernels' stated cycle models, not calibrated for the new families, and
the placed design's transfers; the clock and assumptions are in the results file); "softmax share" is the
softmax kernels' modelled cycles over the sum of every layer's slowest kernel (the work on the latency path of
one event). The distance to the source (qonnx, equal to the Brevitas forward) is measured on ``--events`` random
events: the fraction of outputs whose code differs (only the float-defined softmax / layer norm can differ).
Writes attention_models.md / .json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys

import numpy as np

from nn2aie.api import compile_loaded
from nn2aie.frontends.loader import load_model
from nn2aie.passes.pipeline import CompileOptions

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_common import machine, quiet  # noqa: E402

MODELS = {"self-attention, 1 head, 16 particles x 16": ("attention", 16, 1),
          "self-attention, 4 heads, 32 particles x 16": ("attention", 32, 4),
          "MLP-Mixer jet tagger, 16 x 16, 2 blocks": ("mixer", 16, 0)}


def build(kind: str, tokens: int, heads: int):
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_brevitas_attention, make_brevitas_mixer

    with quiet():
        net = make_brevitas_attention(tokens, 16, heads) if kind == "attention" else make_brevitas_mixer()
        model = load_model(export_brevitas_qonnx(net, 0, input_shape=(tokens, 16)))
    return model


def row(model, batch: int, overrides: dict, events: int, seed: int) -> dict:
    c = compile_loaded(model, CompileOptions(batch=batch, overrides=overrides))
    perf = c.summary()["performance"]
    layers = perf["layers"]
    total = sum(v["kernel_cycles_max"] for v in layers.values())
    softmax = sum(v["kernel_cycles_max"] for k, v in layers.items() if c.model.graph.op(k).kind == "softmax")
    shape = c.model.graph.tensor(c.model.graph.inputs[0]).shape
    x = np.random.default_rng(seed).normal(0, 1, (events, *shape)).astype(np.float32)
    diff = np.rint(np.abs(c.emulate(x).reshape(events, -1) - c.reference(x).reshape(events, -1)) /
                   c.output_type.lsb)
    return {"batch": batch, "tiles": sum(e.tiles for e in c.plan.layers), "ops": len(c.plan.layers),
            "latency_us": perf["latency_us"], "events_per_s": perf["events_per_s"],
            "bottleneck": perf["bottleneck"], "softmax_cycles": softmax, "kernel_cycles": total,
            "softmax_share": softmax / total if total else 0.0, "differ": float((diff > 0).mean()),
            "max_codes": int(diff.max()), "assumptions": perf["assumptions"]}


def render_md(meta: dict, results: list[dict]) -> str:
    lines = ["# Transformer and mixer blocks: tiles, modelled latency, the softmax's share", "",
             f"Date {meta['date']}; machine: {meta['machine']['cpu']} ({meta['machine']['cores']} cores); nn2aie "
             f"{meta['machine']['nn2aie']}; device xcve2802. Regenerate: `python benchmarks/attention_models.py`. "
             "Latency, throughput and cycles are modelled (the softmax, layer-norm and matmul cost models are "
             "stated instruction counts, not calibrated); the distance to the source is measured on "
             f"{meta['events']:,} events.", "",
             "| model | plan | batch | ops | tiles | latency µs | events/s | softmax cycles | softmax share | "
             "bottleneck | outputs differing from the source | max codes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['plan']} | {r['batch']} | {r['ops']} | {r['tiles']} | "
                     f"{r['latency_us']:.2f} | {r['events_per_s']:,} | {r['softmax_cycles']:,.0f} | "
                     f"{100 * r['softmax_share']:.0f} % | {r['bottleneck']} | {100 * r['differ']:.4f} % | "
                     f"{r['max_codes']} |")
    lines += ["", "Assumptions: " + results[0]["assumptions"] if isinstance(results[0]["assumptions"], str) else
              "Assumptions: " + "; ".join(str(a) for a in results[0]["assumptions"])]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent / "results")
    args = ap.parse_args()
    results = []
    for i, (name, (kind, tokens, heads)) in enumerate(MODELS.items()):
        model = build(kind, tokens, heads)
        plans = [("automatic", {})]
        if kind == "attention":
            softmax = [op.name for op in model.graph.ops if op.kind == "softmax"]
            plans.append(("softmax over 4 tiles", {op: {"cas_num": 4} for op in softmax}))
        for plan, overrides in plans:
            for batch in (1, 4):
                r = row(model, batch, overrides, args.events, i)
                results.append({"model": name, "plan": plan} | r)
                print(name, plan, batch, {k: v for k, v in r.items() if k != "assumptions"}, flush=True)
    meta = {"date": datetime.date.today().isoformat(), "machine": machine(), "events": args.events}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attention_models.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    (args.out / "attention_models.md").write_text(render_md(meta, results) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

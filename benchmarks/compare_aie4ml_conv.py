"""Side by side with aie4ml on convolutional QDQ models (issue 14): compute tiles, or the error aie4ml gives.

    python benchmarks/compare_aie4ml_conv.py [--out benchmarks/results] [--venv /tmp/nn2aie-aie4ml-venv]

Writes ``compare_aie4ml_conv.md`` / ``.json``. The models are onnxruntime-quantized CNNs with every scale rounded to a
power of two (benchmarks/conv_models.py builders): a 2-D CNN (3x3 convs, 2x2 max pool, Gemm head) at 16x16, a 1-D
CNN, and MLPerf Tiny's ResNet-8 (plain torch, BatchNorm folded by the exporter); both tools get the same file.
nn2aie compiles at batch 1 and 4 in this process; aie4ml 0.2.1 runs in its own virtual environment
(benchmarks/compare_aie4ml.py: created on first use from PyPI, ``from_onnx`` + ``run_pipeline`` up to its physical
plan, no Vitis) with the batch axis fixed to the same batch, on the same network with a channels-last graph input
(a Transpose in front: aie4ml refuses a Conv that reads an NCHW graph input). Its tile count is the sum of its
kernels' rectangles; where it refuses the model, its error is reported as it gave it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
import tempfile

import onnx

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_common import machine  # noqa: E402
from compare_aie4ml import ensure_aie4ml, run_aie4ml  # noqa: E402
from conv_models import _ort_cnn, _ort_resnet8, _pow2  # noqa: E402


def _fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant nodes as initializers (what onnx-simplifier does; aie4ml reads no Constant node)."""
    from onnx import numpy_helper

    keep = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = next(a for a in node.attribute if a.name == "value")
            model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(value.t), node.output[0]))
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def _nhwc_input(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same network with a channels-last graph input: the input's QuantizeLinear / DequantizeLinear read it as
    is and a ``Transpose`` to NCHW feeds the first Conv -- the layout aie4ml's frontend expects of an image input
    (it refuses a Conv reading an NCHW graph input directly)."""
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    x = m.graph.input[0]
    dims = [d.dim_value or d.dim_param for d in x.type.tensor_type.shape.dim]
    perm = [0, len(dims) - 1, *range(1, len(dims) - 1)]
    x.type.tensor_type.shape.ClearField("dim")
    for d in [dims[0], *dims[2:], dims[1]]:
        dim = x.type.tensor_type.shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        else:
            dim.dim_param = d
    dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and
              any(q.output[0] == n.input[0] and q.input[0] == x.name for q in m.graph.node
                  if q.op_type == "QuantizeLinear"))
    users = [n for n in m.graph.node if dq.output[0] in n.input]
    nchw = dq.output[0] + "_nchw"
    for u in users:
        u.input[list(u.input).index(dq.output[0])] = nchw
    index = list(m.graph.node).index(dq)
    m.graph.node.insert(index + 1, helper.make_node("Transpose", [dq.output[0]], [nchw], perm=perm, name="to_nchw"))
    return m


def nn2aie_tiles(model: onnx.ModelProto, batch: int) -> dict:
    from nn2aie.api import compile_loaded
    from nn2aie.frontends.loader import load_model
    from nn2aie.passes.pipeline import CompileOptions
    from nn2aie.perf.model import model_performance

    try:
        compiled = compile_loaded(load_model(model), CompileOptions(batch=batch))
    except Exception as exc:  # a typed refusal
        return {"error": str(exc)[:200]}
    perf = model_performance(compiled.plan).to_json()
    return {"tiles": len(compiled.plan.kernels), "latency_us": perf["latency_us"],
            "events_per_s": perf["events_per_s"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent / "results")
    ap.add_argument("--venv", type=pathlib.Path, default=pathlib.Path("/tmp/nn2aie-aie4ml-venv"))
    args = ap.parse_args()
    meta = machine() | {"date": datetime.date.today().isoformat()}
    python, version = ensure_aie4ml(args.venv)
    meta["aie4ml"] = version if python else f"not installable: {version}"
    models = {"CNN 2-D 16x16x3 (3 conv, max pool, Gemm), per-tensor scales": _fold_constants(
                  _pow2(_ort_cnn("2d", per_channel=False)[0])),
              "CNN 2-D 16x16x3, per-channel weight scales": _pow2(_ort_cnn("2d")[0]),
              "CNN 1-D 64x4 (2 conv, max pool, mean, Gemm)": _fold_constants(_ort_cnn("1d")[0]),
              "MLPerf Tiny ResNet-8 32x32x3 (9 conv, 3 residual Add, global pool, Gemm)": _fold_constants(
                  _ort_resnet8()[0])}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            for batch in (1, 4):
                theirs = (run_aie4ml(python, _nhwc_input(model), "resource", pathlib.Path(tmp), batch, wires=False)
                          if python else {"error": meta["aie4ml"]})
                rows.append({"model": name, "batch": batch, "nn2aie": nn2aie_tiles(model, batch), "aie4ml": theirs})
                print(name, batch, rows[-1]["nn2aie"].get("tiles"), theirs.get("tiles", theirs.get("error")),
                      flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare_aie4ml_conv.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = ["# nn2aie next to aie4ml on convolutional QDQ models", "",
             f"Date {meta['date']}; machine: {meta['cpu']} ({meta['cores']} cores); nn2aie {meta['nn2aie']}; aie4ml "
             f"{meta['aie4ml']}. Regenerate: `python benchmarks/compare_aie4ml_conv.py`. Both tools read the same "
             "power-of-two QDQ files for the VE2802; aie4ml runs up to its physical plan (no Vitis), Optimize "
             "'resource'. nn2aie's latency / throughput are modelled (perf/model.py).", "",
             "| model | batch | nn2aie tiles | nn2aie modelled latency µs | nn2aie modelled events/s | aie4ml tiles "
             "(or its error) |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        ours, theirs = r["nn2aie"], r["aie4ml"]
        mine = (f"{ours['tiles']} | {ours['latency_us']:.2f} | {ours['events_per_s']:,}" if "error" not in ours
                else f"refused: {ours['error'][:100]} | | ")
        other = str(theirs["tiles"]) if "error" not in theirs else theirs["error"][:220].replace("|", "/").replace(
            "\n", " ")
        lines.append(f"| {r['model']} | {r['batch']} | {mine} | {other} |")
    (args.out / "compare_aie4ml_conv.md").write_text("\n".join(lines) + "\n")
    print((args.out / "compare_aie4ml_conv.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

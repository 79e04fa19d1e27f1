"""Benchmark: models as quantization tools export them (issue 13), compiled, checked and modelled.

    python benchmarks/quant_models.py [--events 2000] [--out benchmarks/results]

Each model is built and quantized here (seeded; nothing is downloaded): FINN's binarized / 2-bit MLPs from
``brevitas_examples.bnn_pynq`` (TFC, SFC, LFC; seeded weights, BatchNorm and TensorNorm parameters drawn so that
every threshold matters: ``nn2aie.examples.brevitas_models.make_finn_fc``), Brevitas MLPs with BatchNorm under
fixed-point, default (float) and per-channel quantizers, a Brevitas input BatchNorm, onnxruntime
``quantize_static`` MLPs (per tensor and per channel, uint8 activations with zero points) and a Brevitas QCDQ
sub-8-bit export. For each: the whole compile (frontend + passes, no project written), the requantisation kind of
every layer, the placed design's emulator against the source framework's own execution (qonnx or onnxruntime)
on ``--events`` inputs (``np.array_equal`` per event; for float-scale models a differing event is a float32 tie of
the source, docs/numerics.md), and the modelled latency and throughput (perf/model.py, its stated assumptions:
AIE-ML at the catalogued clock, no calibration for the requantisation epilogues).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_common import machine, quiet  # noqa: E402


def finn(name: str):
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_finn_fc

    with quiet():
        proto = export_brevitas_qonnx(make_finn_fc(name, 3), 784, input_shape=(1, 28, 28))
    rng = np.random.default_rng(0)
    return proto, lambda n: rng.uniform(-0.2, 1.2, size=(n, 1, 28, 28)).astype(np.float32)


def brevitas_bn(quantizers: str):
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_brevitas_mlp

    with quiet():
        proto = export_brevitas_qonnx(make_brevitas_mlp([16, 64, 32, 5], seed=1, quantizers=quantizers,
                                                        batch_norm=True), 16)
    rng = np.random.default_rng(0)
    return proto, lambda n: (rng.normal(size=(n, 16)) * 3).astype(np.float32)


def ort_static(per_channel: bool):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime import quantization as q

    rng = np.random.default_rng(4)
    sizes, nodes, inits, x = [16, 64, 32, 5], [], [], "x"
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        inits += [numpy_helper.from_array(rng.normal(0, 1 / np.sqrt(k), (k, n)).astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(rng.normal(0, 0.1, n).astype(np.float32), f"B{i}")]
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"B{i}"], [f"a{i}"]))
        x = f"a{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.rows = iter([{"x": (rng.normal(size=(1, 16)) * 2).astype(np.float32)} for _ in range(64)])

        def get_next(self):
            return next(self.rows, None)

    with tempfile.TemporaryDirectory() as tmp, quiet():
        src, dst = pathlib.Path(tmp) / "f.onnx", pathlib.Path(tmp) / "q.onnx"
        onnx.save(model, src)
        q.quantize_static(str(src), str(dst), Reader(), quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)
        proto = onnx.load(str(dst))
    return proto, lambda n: (rng.normal(size=(n, 16)) * 3).astype(np.float32)


def qcdq():
    import brevitas.nn as qnn
    import onnx
    import torch
    from brevitas.export import export_onnx_qcdq
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerTensorFixedPoint,
        Int32Bias,
        Uint8ActPerTensorFixedPoint,
    )

    torch.manual_seed(0)
    kw = dict(bias=True, bias_quant=Int32Bias, weight_quant=Int8WeightPerTensorFixedPoint, return_quant_tensor=True)
    module = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=6, return_quant_tensor=True),
        qnn.QuantLinear(16, 32, weight_bit_width=4, **kw),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(32, 5, weight_bit_width=3, **kw),
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=5)).eval()
    with tempfile.TemporaryDirectory() as tmp, quiet():
        path = pathlib.Path(tmp) / "qcdq.onnx"
        export_onnx_qcdq(module, torch.randn(1, 16), str(path), dynamo=False)
        proto = onnx.load(str(path))
    rng = np.random.default_rng(0)
    return proto, lambda n: (rng.normal(size=(n, 16)) * 3).astype(np.float32)


MODELS = {
    "FINN TFC 1w1a (784-64-64-64-10)": lambda: finn("tfc_1w1a"),
    "FINN TFC 2w2a": lambda: finn("tfc_2w2a"),
    "FINN SFC 1w1a (784-256-256-256-10)": lambda: finn("sfc_1w1a"),
    "FINN LFC 1w1a (784-1024-1024-1024-10)": lambda: finn("lfc_1w1a"),
    "Brevitas MLP + BatchNorm, fixed point": lambda: brevitas_bn("fixed_point"),
    "Brevitas MLP + BatchNorm, default float scales": lambda: brevitas_bn("default"),
    "Brevitas MLP + BatchNorm, per-channel weights": lambda: brevitas_bn("per_channel"),
    "onnxruntime quantize_static MLP, per tensor": lambda: ort_static(False),
    "onnxruntime quantize_static MLP, per channel": lambda: ort_static(True),
    "Brevitas QCDQ 6/4/3-bit MLP": qcdq,
}


def run_one(name: str, build, events: int) -> dict:
    from nn2aie.api import compile_loaded
    from nn2aie.frontends.loader import load_model
    from nn2aie.perf.model import model_performance

    proto, inputs = build()
    t0 = time.perf_counter()
    compiled = compile_loaded(load_model(proto))
    compile_s = time.perf_counter() - t0
    x = inputs(events)
    with quiet():
        ours, ref = compiled.emulate(x), compiled.reference(x)
    differ = int((np.asarray(ours) != np.asarray(ref)).reshape(events, -1).any(axis=1).sum())
    summary = compiled.summary()
    kinds: dict[str, int] = {}
    for layer in summary["layers"]:
        kind = layer.get("requant", {}).get("kind") or ("shift" if layer.get("shift") is not None else "-")
        kinds[kind] = kinds.get(kind, 0) + 1
    perf = model_performance(compiled.plan).to_json()
    return {"model": name, "framework": compiled.model.framework, "compile_s": round(compile_s, 2),
            "tiles": summary["tiles_used"], "layers": len(summary["layers"]), "requant_kinds": kinds,
            "host_stages": summary.get("host_stages", {}), "events": events, "events_differing": differ,
            "reference_exact": compiled.model.graph.source.get("reference_exact", ""),
            "latency_us": perf["latency_us"], "events_per_s": perf["events_per_s"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    for name, build in MODELS.items():
        print(f"{name} ...", flush=True)
        rows.append(run_one(name, build, args.events))
    elapsed = time.perf_counter() - t0
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    (out / "quant_models.json").write_text(json.dumps({"machine": info, "rows": rows, "seconds": elapsed},
                                                      indent=1) + "\n")
    lines = ["# Models as quantization tools export them", "",
             f"Date {datetime.date.today()}; machine: {info['cpu']} ({info['cores']} cores), Python {info['python']}, "
             f"nn2aie {info['nn2aie']}. Regenerate: `python benchmarks/quant_models.py --events {args.events}` "
             f"({elapsed:.0f} s). Device xcve2802 (AIE-ML), batch 4.", "",
             "Compile: frontend + every pass in this process (no project written). Check: the placed design's "
             f"emulator against the source framework's own execution on {args.events} inputs, per event with "
             "`np.array_equal` (float-scale models: a differing event is a float32 tie of the source, "
             "docs/numerics.md; the layer-by-layer tests prove each). Latency / throughput: modelled "
             "(perf/model.py; the requantisation epilogues' costs are uncalibrated instruction counts).", "",
             "| model | source | compile s | tiles | layers by requantisation | events differing | modelled latency "
             "µs | modelled events/s |", "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["requant_kinds"].items()))
        lines.append(f"| {r['model']} | {r['framework']} | {r['compile_s']} | {r['tiles']} | {kinds} | "
                     f"{r['events_differing']} / {r['events']} | {r['latency_us']:.2f} | {r['events_per_s']:,} |")
    lines += ["", "Host-side steps (run in float32 on the host, as the source computes them):", ""]
    for r in rows:
        for where, text in r["host_stages"].items():
            lines.append(f"- {r['model']}, {where}: {text}")
    (out / "quant_models.md").write_text("\n".join(lines) + "\n")
    print((out / "quant_models.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

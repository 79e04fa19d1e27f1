"""Benchmark: convolutions (issue 14) -- modelled single-tile efficiency, scaling of one conv layer over tiles,
and convolutional models compiled, checked bit for bit against their source framework and modelled.

    python benchmarks/conv_models.py [--events 500] [--out benchmarks/results]

Efficiency and latency are modelled (kernels/conv/cost.py: the loop nest of the emitted kernel with the dense
family's calibration on AMD's 64x64x64 int8 GEMM; an A block not on a 256-bit boundary costs one more 256-bit
load, an assumption; the placed design's timing from perf/model.py at the catalogued 1.25 GHz AIE-ML clock). The
models are built and quantized here (seeded, nothing downloaded): onnxruntime ``quantize_static`` CNNs (float
scales; power-of-two copies for the ops that need them), a Brevitas CNN with BatchNorm2d, FINN's CIFAR-10 CNV from
``brevitas_examples.bnn_pynq`` (seeded weights and BatchNorm statistics). The check: the placed design's emulator
against the source's own execution (onnxruntime / qonnx) on ``--events`` random inputs, ``np.array_equal`` per
event (float-scale models: a differing event is a float32 tie of the source; tests/frontends/test_onnx_qdq_conv.py
proves each layer by layer).
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


# -- single conv layers in the IR ---------------------------------------------------------------------------------
def conv_graph(h: int, w: int, c: int, m: int, k: int = 3, stride: int = 1, seed: int = 0):
    from nn2aie.ir.logical import Graph, Op, Tensor
    from nn2aie.ir.types import FixedType

    rng = np.random.default_rng(seed)
    pad = k // 2
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    tensors = {
        "x": Tensor("x", (h, w, c), FixedType(8, 5, True)),
        "w": Tensor("w", (k * k * c, m), FixedType(8, 7, True), rng.integers(-128, 128, size=(k * k * c, m))),
        "b": Tensor("b", (m,), FixedType(16, 12, True), rng.integers(-2000, 2000, size=m)),
        "y": Tensor("y", (ho, wo, m), FixedType(8, 3, False)),
    }
    op = Op("conv", "conv", ["x", "w", "b"], ["y"], {"kernel": [k, k], "strides": [stride, stride],
                                                      "dilations": [1, 1], "pads_begin": [pad, pad],
                                                      "pads_end": [pad, pad], "groups": 1, "activation": "relu"})
    g = Graph(f"conv{k}x{k}_{h}x{w}x{c}_{m}", tensors, [op], ["x"], ["y"], {"framework": "test"})
    g.verify()
    return g


def single_tile_rows() -> list[dict]:
    from nn2aie.kernels.conv import cost
    from nn2aie.passes.pipeline import CompileOptions, compile_graph

    cases = [(8, 8, 32, 32, 3, 1, 4), (8, 8, 40, 32, 3, 1, 4), (8, 8, 32, 16, 3, 1, 4), (6, 8, 32, 32, 3, 1, 4),
             (8, 8, 32, 32, 1, 1, 4), (8, 8, 32, 32, 3, 2, 4), (8, 6, 32, 32, 3, 1, 4), (4, 8, 32, 32, 3, 1, 8)]
    rows = []
    for h, w, c, m, k, stride, batch in cases:
        g = conv_graph(h, w, c, m, k, stride)
        one = {"cas_length": 1, "parts": 1, "bands": 1, "event_groups": 1}
        try:
            plan, _ = compile_graph(g, CompileOptions(batch=batch, overrides={"conv": one}))
        except Exception as exc:  # a typed refusal (does not fit one tile): reported as such
            rows.append({"shape": f"{k}x{k}/{stride} {h}x{w}x{c} -> {m}", "batch": batch, "error": str(exc)[:120]})
            continue
        (e,) = plan.layers
        nest = cost.loop_nest(e)
        rows.append({"shape": f"{k}x{k}/{stride} {h}x{w}x{c} -> {m}", "batch": batch,
                     "blocking": f"{e.m_accumulators}x{e.n_accumulators}", "cycles": round(cost.tile_cycles(e)),
                     "macs": int(e.tile_batch * e.out_spatial[0] * e.out_spatial[1] * m * k * k * c),
                     "efficiency": round(cost.efficiency(e), 4), "trip_a_bits": nest.a_bits,
                     "trip_b_bits": nest.b_bits})
    return rows


def scaling_rows() -> list[dict]:
    from nn2aie.kernels.registry import family_named
    from nn2aie.passes.pipeline import CompileOptions, compile_graph
    from nn2aie.perf.model import model_performance

    g = conv_graph(16, 16, 64, 64)
    splits = [(1, 2, 2, 2), (2, 2, 2, 2), (4, 2, 2, 2), (4, 4, 2, 2), (4, 4, 4, 1), (8, 4, 2, 2),
              (8, 4, 1, 4)]  # (cas_length, parts, bands, event_groups); bands x event groups <= 6 DMA channels
    macs = 16 * 16 * 64 * 64 * 9 * 4
    rows = []
    for length, parts, bands, groups in splits:
        ov = {"cas_length": length, "parts": parts, "bands": bands, "event_groups": groups}
        try:
            plan, _ = compile_graph(g, CompileOptions(batch=4, overrides={"conv": ov}))
        except Exception as exc:
            rows.append({"split": ov, "error": str(exc)[:120]})
            continue
        perf = model_performance(plan).to_json()
        (e,) = plan.layers
        tiles = sum(1 for k in plan.kernels if k.layer == "conv")
        slowest = family_named("conv").max_tile_cycles(e)
        rows.append({"split": ov, "tiles": tiles, "latency_us": perf["latency_us"],
                     "events_per_s": perf["events_per_s"], "bottleneck": perf.get("bottleneck", ""),
                     "slowest_tile_cycles": round(slowest),
                     "compute_efficiency": round(macs / (tiles * 256 * slowest), 4),
                     "array_efficiency": round(macs / (tiles * 256 * perf["interval_cycles"]), 4)})
    return rows


# -- models -------------------------------------------------------------------------------------------------------
def _ort_cnn(kind: str, per_channel: bool | None = None):
    import torch

    class Cnn2d(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.c2 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)
            self.c3 = torch.nn.Conv2d(32, 32, 3, padding=1)
            self.fc = torch.nn.Linear(32 * 4 * 4, 10)

        def forward(self, x):
            x = torch.nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
            x = torch.relu(self.c3(torch.relu(self.c2(x))))
            return self.fc(torch.flatten(x, 1))

    class Cnn1d(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv1d(4, 16, 5, padding=2)
            self.c2 = torch.nn.Conv1d(16, 32, 3, stride=2)
            self.fc = torch.nn.Linear(32, 3)

        def forward(self, x):
            x = torch.nn.functional.max_pool1d(torch.relu(self.c1(x)), 2)
            return self.fc(torch.mean(torch.relu(self.c2(x)), dim=2))

    torch.manual_seed(0)
    net, shape = (Cnn2d(), (3, 16, 16)) if kind == "2d" else (Cnn1d(), (4, 64))
    proto = _ort_quantize(net.eval(), shape, (kind == "2d") if per_channel is None else per_channel)
    if kind != "2d":
        proto = _pow2(proto)
    gen = np.random.default_rng(1)
    return proto, lambda n: gen.random((n, *shape), dtype=np.float32)


def _ort_quantize(net, shape: tuple[int, ...], per_channel: bool):
    """A float torch network exported (TorchScript, eval mode: BatchNorm folded into the convs) and quantized by
    onnxruntime's ``quantize_static`` (QDQ, uint8 activations, int8 weights) on 32 random calibration images."""
    import onnx
    import torch
    from onnxruntime import quantization as q

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp, quiet():
        src, dst = pathlib.Path(tmp) / "f.onnx", pathlib.Path(tmp) / "q.onnx"
        torch.onnx.export(net, torch.rand(1, *shape), str(src), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)

        class Reader(q.CalibrationDataReader):
            def __init__(self):
                self.rows = iter([{"x": rng.random((1, *shape), dtype=np.float32)} for _ in range(32)])

            def get_next(self):
                return next(self.rows, None)

        q.quantize_static(str(src), str(dst), Reader(), quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)
        return onnx.load(str(dst))


def _ort_resnet8():
    """MLPerf Tiny's ResNet-8 topology in plain torch (float, seeded), quantized by onnxruntime and rounded to
    power-of-two scales: the QDQ form both nn2aie and aie4ml read."""
    import torch

    class Stack(torch.nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.c1 = torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
            self.b1 = torch.nn.BatchNorm2d(cout)
            self.c2 = torch.nn.Conv2d(cout, cout, 3, padding=1)
            self.b2 = torch.nn.BatchNorm2d(cout)
            self.short = torch.nn.Conv2d(cin, cout, 1, stride=stride) if stride != 1 or cin != cout else None

        def forward(self, x):
            y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(y + (self.short(x) if self.short is not None else x))

    class ResNet8(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(16)
            self.stacks = torch.nn.Sequential(Stack(16, 16, 1), Stack(16, 32, 2), Stack(32, 64, 2))
            self.fc = torch.nn.Linear(64, 10)

        def forward(self, x):
            x = self.stacks(torch.relu(self.bn(self.stem(x))))
            return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))

    torch.manual_seed(0)
    proto = _pow2(_ort_quantize(ResNet8().eval(), (3, 32, 32), per_channel=False))
    gen = np.random.default_rng(1)
    return proto, lambda n: gen.random((n, 3, 32, 32), dtype=np.float32)


def _pow2(model):
    """Every scale rounded to a power of two, zero points 0, biases at their layer's input x weight scale."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}

    def put(name, value):
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(numpy_helper.to_array(inits[name]).dtype), name))

    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            put(n.input[1], np.exp2(np.round(np.log2(numpy_helper.to_array(inits[n.input[1]])))))
            if len(n.input) > 2 and n.input[2]:
                put(n.input[2], np.zeros_like(numpy_helper.to_array(inits[n.input[2]])))
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for n in model.graph.node:
        if n.op_type in ("Conv", "Gemm") and len(n.input) > 2 and n.input[2] in dq:
            put(dq[n.input[2]].input[1], numpy_helper.to_array(inits[dq[n.input[0]].input[1]])
                * numpy_helper.to_array(inits[dq[n.input[1]].input[1]]))
    return model


def _brevitas_cnn():
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint

    from nn2aie.examples.brevitas_models import export_brevitas_qonnx

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            w = {"weight_quant": Int8WeightPerTensorFixedPoint, "bias": False}
            self.qin = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(3, 32, 3, padding=1, **w)
            self.bn1 = torch.nn.BatchNorm2d(32)
            self.r1 = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.c2 = qnn.QuantConv2d(32, 32, 3, padding=1, **w)
            self.bn2 = torch.nn.BatchNorm2d(32)
            self.r2 = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(32 * 4 * 4, 10, **w)
            self.qout = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)

        def forward(self, x):
            x = torch.nn.functional.max_pool2d(self.r1(self.bn1(self.c1(self.qin(x)))), 2)
            x = torch.nn.functional.max_pool2d(self.r2(self.bn2(self.c2(x))), 2)
            return self.qout(self.fc(torch.flatten(x, 1)))

    net = Net()
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(-1.0, 1.0)
    net.eval()
    with quiet():
        proto = export_brevitas_qonnx(net, 0, input_shape=(3, 16, 16))
    gen = np.random.default_rng(2)
    return proto, lambda n: (gen.random((n, 3, 16, 16), dtype=np.float32) * 2 - 1)


def _cnv(name: str):
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_finn_cnv

    with quiet():
        proto = export_brevitas_qonnx(make_finn_cnv(name, 3), 0, input_shape=(3, 32, 32))
    gen = np.random.default_rng(3)
    return proto, lambda n: gen.uniform(-0.2, 1.2, (n, 3, 32, 32)).astype(np.float32)


def _ds_cnn():
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_ds_cnn

    with quiet():
        proto = export_brevitas_qonnx(make_ds_cnn(0), 0, input_shape=(1, 49, 10))
    gen = np.random.default_rng(4)
    return proto, lambda n: gen.normal(0.0, 0.6, (n, 1, 49, 10)).astype(np.float32)


def _resnet8():
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_resnet8

    with quiet():
        proto = export_brevitas_qonnx(make_resnet8(0), 0, input_shape=(3, 32, 32))
    gen = np.random.default_rng(5)
    return proto, lambda n: gen.uniform(-0.2, 1.2, (n, 3, 32, 32)).astype(np.float32)


MODELS = {
    "onnxruntime CNN 2-D (3 conv, max pool, float scales, per-channel)": lambda: _ort_cnn("2d"),
    "onnxruntime CNN 1-D (2 conv, max pool, mean; power-of-two)": lambda: _ort_cnn("1d"),
    "Brevitas CNN (2 conv + BatchNorm2d + ReLU + max pool)": _brevitas_cnn,
    "FINN CNV 2w2a (CIFAR-10)": lambda: _cnv("cnv_2w2a"),
    "MLPerf Tiny DS-CNN keyword spotter (49x10, depthwise-separable)": _ds_cnn,
    "MLPerf Tiny ResNet-8 (CIFAR-10, 16/32/64 filters, residual Adds)": _resnet8,
}


def run_model(name: str, build, events: int, batch: int) -> dict:
    from nn2aie.api import compile_loaded
    from nn2aie.frontends.loader import load_model
    from nn2aie.passes.pipeline import CompileOptions
    from nn2aie.perf.model import model_performance

    proto, inputs = build()
    t0 = time.perf_counter()
    with quiet():
        compiled = compile_loaded(load_model(proto), CompileOptions(batch=batch))
    compile_s = time.perf_counter() - t0
    x = inputs(events)
    t1 = time.perf_counter()
    with quiet():
        ours = compiled.emulate(x)
    emulate_s = time.perf_counter() - t1
    with quiet():
        ref = compiled.reference(x)
    differ = int((np.asarray(ours) != np.asarray(ref)).reshape(events, -1).any(axis=1).sum())
    summary = compiled.summary()
    perf = model_performance(compiled.plan).to_json()
    convs = [layer for layer in summary["layers"] if layer.get("op") in ("conv", "max_pool")]
    return {"model": name, "framework": compiled.model.framework, "batch": batch, "compile_s": round(compile_s, 2),
            "tiles": summary["tiles_used"], "conv_layers": len(convs), "events": events, "events_differing": differ,
            "emulate_s": round(emulate_s, 2), "latency_us": perf["latency_us"], "events_per_s": perf["events_per_s"],
            "bottleneck": perf.get("bottleneck", "")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    print("single tiles ...", flush=True)
    single = single_tile_rows()
    print("scaling ...", flush=True)
    scaling = scaling_rows()
    models = []
    for name, build in MODELS.items():
        for batch in (1, 4):
            print(f"{name} batch {batch} ...", flush=True)
            models.append(run_model(name, build, args.events, batch))
    elapsed = time.perf_counter() - t0
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    (out / "conv_models.json").write_text(json.dumps({"machine": info, "single_tile": single, "scaling": scaling,
                                                      "models": models, "seconds": elapsed}, indent=1) + "\n")
    lines = ["# Convolutions: modelled efficiency, scaling, and models checked against their source", "",
             f"Date {datetime.date.today()}; machine: {info['cpu']} ({info['cores']} cores), Python {info['python']}, "
             f"nn2aie {info['nn2aie']}. Regenerate: `python benchmarks/conv_models.py --events {args.events}` "
             f"({elapsed:.0f} s). Device xcve2802 (AIE-ML, 1.25 GHz), int8.", "",
             "## One tile (modelled)", "",
             "The kernel's loop nest (kernels/conv/cost.py) on one tile, all of the layer's channels: efficiency = "
             "useful MACs / (256 int8 MACs per cycle x modelled cycles of one invocation, call overhead included). "
             "Calibration: the dense family's, on AMD's 64x64x64 int8 GEMM (within 2.4 %); the extra load of an "
             "unaligned A block is assumed, not measured.", "",
             "| conv (k x k / stride, input -> filters) | batch | blocking M x N | cycles | MACs | efficiency |",
             "|---|---:|---|---:|---:|---:|"]
    for r in single:
        if "error" in r:
            lines.append(f"| {r['shape']} | {r['batch']} | does not fit one tile | | | |")
        else:
            lines.append(f"| {r['shape']} | {r['batch']} | {r['blocking']} | {r['cycles']:,} | {r['macs']:,} | "
                         f"{100 * r['efficiency']:.1f} % |")
    lines += ["", "## One conv layer over many tiles (modelled)", "",
              "3x3 conv 16x16x64 -> 64, batch 4, forced splits (input-channel cascade x output-channel slices x row "
              "bands x event groups); the placed design's model (perf/model.py): latency, throughput and its "
              "bottleneck; compute efficiency = MACs per iteration / (tiles x 256 x the slowest tile's cycles) -- "
              "the layer's own scaling; array efficiency = the same over the design's interval (a single layer "
              "whose input and output cross PLIOs is bound by them from a few dozen tiles on).", "",
              "| cas_length x parts x bands x event_groups | tiles | slowest tile cycles | compute efficiency | "
              "latency µs | events/s | array efficiency | bottleneck |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in scaling:
        s = r["split"]
        split = f"{s['cas_length']} x {s['parts']} x {s['bands']} x {s['event_groups']}"
        if "error" in r:
            lines.append(f"| {split} | refused: {r['error']} | | | | | | |")
        else:
            lines.append(f"| {split} | {r['tiles']} | {r['slowest_tile_cycles']:,} | "
                         f"{100 * r['compute_efficiency']:.1f} % | {r['latency_us']:.2f} | {r['events_per_s']:,} | "
                         f"{100 * r['array_efficiency']:.1f} % | {r['bottleneck']} |")
    lines += ["", "## Models (measured check, modelled performance)", "",
              f"Compile: frontend + every pass in this process. Check: emulator vs the source framework on "
              f"{args.events} inputs (`np.array_equal` per event). Emulation uses the general descriptor path "
              "(windowed ports), seconds on this machine.", "",
              "| model | source | batch | compile s | tiles | events differing | emulate s | modelled latency µs | "
              "modelled events/s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in models:
        lines.append(f"| {r['model']} | {r['framework']} | {r['batch']} | {r['compile_s']} | {r['tiles']} | "
                     f"{r['events_differing']} / {r['events']} | {r['emulate_s']} | {r['latency_us']:.2f} | "
                     f"{r['events_per_s']:,} |")
    (out / "conv_models.md").write_text("\n".join(lines) + "\n")
    print((out / "conv_models.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

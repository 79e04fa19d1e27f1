"""Benchmark: compile time and emulation throughput of the DAG models of issue 11, next to onnxruntime.

    python benchmarks/dag_models.py [--events 50000] [--repeats 3] [--out benchmarks/results]

Writes ``dag_models.md`` and ``dag_models.json``. The models are plain PyTorch modules quantized post-training
by ``nn2aie.from_pytorch`` (power-of-two scales, calibration on 512 seeded normal samples) and exported as ONNX
QDQ (``nn2aie.frontends.pytorch.export_qdq``), the file nn2aie compiles and onnxruntime runs:

- residual MLP: 32 -> 64, three blocks ``relu(h + fc(h))`` (skip connections, the two branches quantized with
  different scales), 64 -> 10;
- two-branch: 32 -> {relu 48, linear 40} -> concat 88 -> 32 -> 5 (fan-out and a concat);
- DeepSets tagger: [16 particles, 8 features] -> per-particle 32 -> 32 -> mean over particles -> 32 -> 5;
- Brevitas residual MLP (QONNX): 32 -> two blocks ``h + fc(relu(fc(h)))`` merged by ``QuantEltwiseAdd`` (skip and
  branch from two quantizers) -> 5, calibrated on seeded inputs, exported with ``export_qonnx``; its reference is
  qonnx's own execution (``execute_onnx``, node by node), so there is no onnxruntime column.

Compile = ONNX frontend + every pass + writing the project (median of the repeats). Emulation = events/s of the
placed-design emulator (quantisation and dequantisation included) against onnxruntime on the same QDQ file and
the same float inputs, graph optimisations off (the float QDQ path the bit-exact checks use) and on; each the
best of the repeats; the bit-exactness of the two outputs is checked on the same run.
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
import torch
from torch import nn

import nn2aie
from nn2aie.api import compile_loaded, write_project_atomic
from nn2aie.frontends.loader import load_model
from nn2aie.frontends.pytorch import export_qdq

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_common import machine as base_machine  # noqa: E402


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(32, 64)
        self.blocks = nn.ModuleList(nn.Linear(64, 64) for _ in range(3))
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        for fc in self.blocks:
            h = torch.relu(h + fc(h))
        return self.out(h)


class TwoBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(32, 48), nn.Linear(32, 40)
        self.fc, self.out = nn.Linear(88, 32), nn.Linear(32, 5)

    def forward(self, x):
        return self.out(torch.relu(self.fc(torch.cat([torch.relu(self.a(x)), self.b(x)], dim=1))))


class DeepSets(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.phi1, self.phi2 = nn.Linear(8, 32), nn.Linear(32, 32)
        self.rho1, self.rho2 = nn.Linear(32, 32), nn.Linear(32, 5)

    def forward(self, x):
        h = torch.relu(self.phi2(torch.relu(self.phi1(x))))
        return self.rho2(torch.relu(self.rho1(torch.mean(h, dim=1))))


MODELS = {"residual MLP 32-64x3-10": (Residual, (32,)), "two-branch 32-{48,40}-88-32-5": (TwoBranch, (32,)),
          "DeepSets 16x8 -> 32-32 -> mean -> 32-5": (DeepSets, (16, 8)),
          "Brevitas residual 32-(64-32)x2-5, QONNX": (None, (32,))}


def machine() -> dict:
    return base_machine() | {"numpy": np.__version__, "onnxruntime": ort.__version__, "torch": torch.__version__}


def build(cls, shape: tuple[int, ...]):
    rng = np.random.default_rng(5)
    if cls is None:  # the Brevitas model, exported as QONNX
        from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_brevitas_residual

        return export_brevitas_qonnx(make_brevitas_residual(seed=5), shape[0]), rng
    torch.manual_seed(5)
    cal = rng.standard_normal((512, *shape)).astype(np.float32)
    return export_qdq(cls().eval(), cal[:1], calibration=cal), rng


def time_compile(proto, repeats: int) -> tuple[float, int, list[str], dict]:
    times, tiles, families, perf = [], 0, [], {}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / "model.onnx"
            path.write_bytes(proto.SerializeToString())
            t0 = time.perf_counter()
            compiled = compile_loaded(load_model(path))
            write_project_atomic(compiled, pathlib.Path(tmp) / "project")
            times.append(time.perf_counter() - t0)
            tiles = len(compiled.plan.kernels)
            families = sorted({e.family for e in compiled.plan.layers})
            perf = compiled.summary()["performance"]
    return statistics.median(times), tiles, families, perf


def time_emulation_qonnx(proto, x: np.ndarray, repeats: int) -> dict:
    from nn2aie.frontends.qonnx_frontend import run_reference

    compiled = compile_loaded(load_model(proto))
    compiled.emulate(x[:64])
    t_ours, t_ref = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours = compiled.emulate(x)
        t_ours.append(time.perf_counter() - t0)
    n_ref = min(len(x), 10_000)  # qonnx runs node by node in Python: a slice of the events is enough
    for _ in range(repeats):
        t0 = time.perf_counter()
        ref = run_reference(proto, x[:n_ref])
        t_ref.append(time.perf_counter() - t0)
    ours_eps, ref_eps = len(x) / min(t_ours), n_ref / min(t_ref)
    return {"events": len(x), "nn2aie_events_per_s": ours_eps, "ref_framework": "qonnx",
            "ref_events": n_ref, "ort_ref_events_per_s": ref_eps, "ort_events_per_s": None,
            "ratio_ref": ours_eps / ref_eps, "ratio": None,
            "bit_exact_vs_ort_reference": bool(np.array_equal(ours[:n_ref], ref.reshape(n_ref, -1))),
            "bit_exact_vs_ort_default": None}


def time_emulation(proto, x: np.ndarray, repeats: int) -> dict:
    compiled = compile_loaded(load_model(proto))
    sessions = {}
    for label, level in (("reference", ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
                         ("default", ort.GraphOptimizationLevel.ORT_ENABLE_ALL)):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        sessions[label] = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name = sessions["default"].get_inputs()[0].name
    times: dict[str, list[float]] = {"nn2aie": [], "reference": [], "default": []}
    outs: dict[str, np.ndarray] = {}
    compiled.emulate(x[:64])  # warm-up; nn2aie first (onnxruntime's spinning threads would steal the 2nd core)
    for _ in range(repeats):
        t0 = time.perf_counter()
        outs["nn2aie"] = compiled.emulate(x)
        times["nn2aie"].append(time.perf_counter() - t0)
    for label, sess in sessions.items():
        sess.run(None, {name: x[:64]})
        for _ in range(repeats):
            t0 = time.perf_counter()
            outs[label] = np.asarray(sess.run(None, {name: x})[0]).reshape(len(x), -1)
            times[label].append(time.perf_counter() - t0)
    best = {k: len(x) / min(v) for k, v in times.items()}
    return {"events": len(x), "nn2aie_events_per_s": best["nn2aie"], "ort_ref_events_per_s": best["reference"],
            "ort_events_per_s": best["default"], "ratio_ref": best["nn2aie"] / best["reference"],
            "ratio": best["nn2aie"] / best["default"],
            "bit_exact_vs_ort_reference": bool(np.array_equal(outs["nn2aie"], outs["reference"])),
            "bit_exact_vs_ort_default": bool(np.array_equal(outs["nn2aie"], outs["default"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = ap.parse_args()
    rows = []
    for label, (cls, shape) in MODELS.items():
        proto, rng = build(cls, shape)
        x = rng.standard_normal((args.events, *shape)).astype(np.float32)
        x[: args.events // 10] *= 8.0  # a tenth far outside the calibration range: saturation
        print(f"{label}: compiling ...", file=sys.stderr)
        t_compile, tiles, families, perf = time_compile(proto, args.repeats)
        print(f"{label}: emulating {args.events} events ...", file=sys.stderr)
        timing = time_emulation_qonnx if cls is None else time_emulation
        rows.append({"model": label, "tiles": tiles, "families": families, "compile_s": t_compile,
                     "modelled_events_per_s": perf["events_per_s"], "modelled_latency_us": perf["latency_us"],
                     "modelled_bottleneck": perf["bottleneck"], **timing(proto, x, args.repeats)})
    result = {"date": datetime.date.today().isoformat(), "machine": machine(), "nn2aie": nn2aie.__version__,
              "device": "xcve2802 (nn2aie defaults: batch 4, 128-bit PLIO)", "rows": rows}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dag_models.json").write_text(json.dumps(result, indent=1) + "\n")
    m = result["machine"]
    lines = [
        "# DAG models: compile time and emulation throughput",
        "",
        f"Date {result['date']}; machine: {m['cpu']} ({m['cores']} cores), Python {m['python']}, NumPy "
        f"{m['numpy']}, onnxruntime {m['onnxruntime']}, torch {m['torch']}, nn2aie {m['nn2aie']}.",
        f"Target {result['device']}. Regenerate: `python benchmarks/dag_models.py`. Compile = ONNX frontend + "
        f"passes + project writing (median of {args.repeats}); emulation = placed-design emulator vs onnxruntime "
        f"on the same {args.events} float inputs (a tenth 8x beyond the calibration range), best of "
        f"{args.repeats}; reference = onnxruntime with graph optimisations off (qonnx execution on up to 10000 "
        f"events for the QONNX model), ORT default = onnxruntime with them on. AIE columns are modelled by "
        f"nn2aie's performance model (AIE clock 1.25 GHz; the dense cost model is calibrated on AMD's GEMM "
        f"cycle counts, the elementwise / view / reduce tile costs are counted from their loops and not yet "
        f"calibrated), not measured.",
        "",
        "| model | tiles | families | AIE events/s (modelled) | AIE latency µs (modelled) | compile (s) | "
        "nn2aie events/s | reference events/s | ratio | ORT default events/s | ratio | "
        "bit-exact vs reference |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['tiles']} | {', '.join(r['families'])} | "
                     f"{r['modelled_events_per_s']:,.0f} | {r['modelled_latency_us']:.3f} | {r['compile_s']:.2f} | "
                     f"{r['nn2aie_events_per_s']:,.0f} | {r['ort_ref_events_per_s']:,.0f} "
                     f"({r.get('ref_framework', 'ORT, no optimisation')}) | {r['ratio_ref']:.2f} | "
                     + (f"{r['ort_events_per_s']:,.0f} | {r['ratio']:.2f} | " if r["ort_events_per_s"] else "– | – | ")
                     + f"{'yes' if r['bit_exact_vs_ort_reference'] else 'NO'} |")
    (out / "dag_models.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

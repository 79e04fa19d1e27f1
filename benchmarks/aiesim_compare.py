"""Benchmark: nn2aie's latency model against the public aiesimulator latencies of the same dense designs.

    python benchmarks/aiesim_compare.py [--fit] [--out benchmarks/results]

Data: ``benchmarks/data/aiesim_aie4ml_models.csv`` (66 designs of six physics MLPs placed by aie4ml on VEK280 and
run in aiesimulator: int8, batch 8, ``aie::mmul`` 4x8x8, all ReLU, each layer's ``cas_length x cas_num``; source and
commit in the file header). For every design nn2aie compiles an int8 QDQ MLP of the same layer shapes with the same
per-layer parallelism, batch and mmul shape, and in the peer's buffer structure: one PLIO per graph input
(``plio_split=False``) and every tensor between layers through a memory tile (``direct_handoffs=False``). The
modelled metric is aiesimulator's: first input word to first output word (``first_output_cycles``), converted at
the catalogued 1.25 GHz AIE clock.

The overhead constants of the performance model (catalog facts ``dma_start_cycles``, ``kernel_start_cycles``,
``plio_crossing_cycles``) are fitted only on ``jet_tagger``, ``vae_lhc_medium`` and ``tau_event_selection``
(``--fit`` re-runs the fit: least squares of the relative error, each constant >= 0); the other three models are a
held-out validation, never used in the fit. Writes ``aiesim_compare.md`` and ``aiesim_compare.json``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import itertools
import json
import pathlib
import sys
import tempfile

import numpy as np
import onnx

from nn2aie.devices import get_device
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.frontends.loader import load_model
from nn2aie.passes.pipeline import CompileOptions, compile_graph
from nn2aie.perf.model import Overheads, model_performance

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_common import machine  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE / "data" / "aiesim_aie4ml_models.csv"
FIT_MODELS = ("jet_tagger", "vae_lhc_medium", "tau_event_selection")
ITERATIONS = 3  # graph iterations simulated per design (only the first one's latency is compared)


def read_designs() -> list[dict]:
    lines = [line for line in DATA.read_text().splitlines() if line and not line.startswith("#")]
    rows = list(csv.DictReader(lines))
    for r in rows:
        r["shapes"] = [tuple(map(int, s.split("x"))) for s in r["layer_shapes"].split("|")]
        r["parallelism"] = [tuple(map(int, s.split("x"))) for s in r["layer_parallelism"].split("|")]
        r["aiesim_ns"] = float(r["latency_ns"])
    return rows


def build_plans(rows: list[dict]) -> list:
    loaded, plans = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for r in rows:
            sizes = [r["shapes"][0][0]] + [n for _, n in r["shapes"]]
            key = tuple(sizes)
            if key not in loaded:
                path = pathlib.Path(tmp) / f"mlp_{len(loaded)}.onnx"
                onnx.save(make_qdq_mlp(sizes, relu_last=True, name=r["model_name"]), path)
                loaded[key] = load_model(str(path))
            graph = loaded[key].graph
            names = [op.name for op in graph.ops if op.kind == "dense"]
            overrides = {n: {"cas_length": pk, "cas_num": pn, "mmul": "4x8x8"}
                         for n, (pk, pn) in zip(names, r["parallelism"], strict=True)}
            plan, _ = compile_graph(graph, CompileOptions(batch=int(r["batch"]), overrides=overrides,
                                                          plio_split=False, direct_handoffs=False))
            plans.append(plan)
    return plans


def modelled_ns(plans: list, over: Overheads) -> np.ndarray:
    clock = get_device(plans[0].device).aie_clock_mhz
    return np.array([model_performance(p, ITERATIONS, overheads=over).first_output_cycles * 1e3 / clock
                     for p in plans])


def fit_overheads(plans: list, measured: np.ndarray, steps: int = 4) -> Overheads:
    """Bounded least squares of the relative error over the fit designs: Gauss-Newton steps, each solving every
    subset of free constants and keeping the best solution with no negative constant (the others at 0)."""
    x = np.zeros(3)
    w = 1.0 / measured
    for _ in range(steps):
        base = modelled_ns(plans, Overheads(*x))
        jac = np.empty((len(measured), 3))
        for i in range(3):
            d = x.copy()
            d[i] += 8.0
            jac[:, i] = (modelled_ns(plans, Overheads(*d)) - base) / 8.0
        target = (measured - base + jac @ x) * w
        best = (float(np.sum((base * w - measured * w) ** 2)), x)
        for k in (1, 2, 3):
            for cols in itertools.combinations(range(3), k):
                a = jac[:, cols] * w[:, None]
                sol = np.linalg.lstsq(a, target, rcond=None)[0]
                if (sol < 0).any():
                    continue
                cand = np.zeros(3)
                cand[list(cols)] = sol
                res = float(np.sum((a @ sol - target) ** 2))
                if res < best[0]:
                    best = (res, cand)
        if np.allclose(best[1], x, atol=0.05):
            break
        x = best[1]
    return Overheads(*[round(float(v), 1) for v in x])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for u in np.unique(v):  # ties share their mean rank
            r[v == u] = r[v == u].mean()
        return r
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def summarise(rows: list[dict], model: np.ndarray) -> dict:
    meas = np.array([r["aiesim_ns"] for r in rows])
    err = (model - meas) / meas
    names = [r["model_name"] for r in rows]
    out = {"sets": {}, "models": {}}
    for label, members in (("fitted", FIT_MODELS), ("held-out", tuple(n for n in dict.fromkeys(names)
                                                                       if n not in FIT_MODELS))):
        sel = np.array([n in members for n in names])
        out["sets"][label] = {"designs": int(sel.sum()), "median_abs_err_pct": round(100 * float(np.median(
            np.abs(err[sel]))), 1), "max_abs_err_pct": round(100 * float(np.abs(err[sel]).max()), 1)}
    for name in dict.fromkeys(names):
        sel = np.array([n == name for n in names])
        out["models"][name] = {"set": "fitted" if name in FIT_MODELS else "held-out", "designs": int(sel.sum()),
                               "mean_err_pct": round(100 * float(err[sel].mean()), 1),
                               "max_abs_err_pct": round(100 * float(np.abs(err[sel]).max()), 1),
                               "spearman": round(spearman(model[sel], meas[sel]), 2)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="re-fit the overhead constants on the fit models")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    rows = read_designs()
    plans = build_plans(rows)
    device = get_device(plans[0].device)
    catalog = Overheads.of(device)
    fit_idx = [i for i, r in enumerate(rows) if r["model_name"] in FIT_MODELS]
    refit = fit_overheads([plans[i] for i in fit_idx], np.array([rows[i]["aiesim_ns"] for i in fit_idx])) \
        if args.fit else None
    model = modelled_ns(plans, catalog)
    before = modelled_ns(plans, Overheads(0.0, 0.0, 0.0))
    stats = summarise(rows, model)
    stats_before = summarise(rows, before)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    m = machine()
    lines = [
        "# Latency model against aiesimulator (66 public aie4ml designs)",
        "",
        f"{datetime.date.today().isoformat()}, nn2aie {m['nn2aie']}. Measured: aiesimulator latencies (first input "
        "word -> first output word, `io_stream_start_difference_cycles`) published in KastnerRG/aie4ml, branch aba, "
        "commit f8f0511a488f83dadaa4ce53a75722e260faf340, `experiments/runs/models/models.csv` (VEK280, int8, batch "
        "8, mmul 4x8x8, 128-bit PLIO at 312.5 MHz, all ReLU). Modelled: nn2aie's performance model of the same "
        "layer shapes at the same per-layer `cas_length x cas_num`, in the peer's buffer structure (one input PLIO, "
        "every tensor between layers through a memory tile), converted at 1.25 GHz (the catalogued VE2802 AIE "
        "clock; the CSV does not record aiesimulator's clock).",
        "",
        f"Overhead constants (catalog, `{device.generation}`): dma_start_cycles = {catalog.dma_start_cycles:g}, "
        f"kernel_start_cycles = {catalog.kernel_start_cycles:g}, plio_crossing_cycles = "
        f"{catalog.plio_crossing_cycles:g}; fitted only on {', '.join(FIT_MODELS)} (bounded least squares of the "
        "relative error, each constant >= 0). The other three models are held out.",
    ]
    if refit is not None:
        lines += ["", f"Re-fit by this run: dma_start_cycles = {refit.dma_start_cycles:g}, kernel_start_cycles = "
                  f"{refit.kernel_start_cycles:g}, plio_crossing_cycles = {refit.plio_crossing_cycles:g}."]
    lines += ["", "| set | designs | median abs error | max abs error | all overheads 0 (median / max) |",
              "|---|---|---|---|---|"]
    for label, s in stats["sets"].items():
        b = stats_before["sets"][label]
        lines.append(f"| {label} | {s['designs']} | {s['median_abs_err_pct']} % | {s['max_abs_err_pct']} % | "
                     f"{b['median_abs_err_pct']} % / {b['max_abs_err_pct']} % |")
    lines += ["", "| model | set | designs | mean error | max abs error | Spearman (ranking within the model) |",
              "|---|---|---|---|---|---|"]
    for name, s in stats["models"].items():
        lines.append(f"| {name} | {s['set']} | {s['designs']} | {s['mean_err_pct']:+} % | {s['max_abs_err_pct']} % "
                     f"| {s['spearman']} (overheads 0: {stats_before['models'][name]['spearman']}) |")
    lines += ["", "Remaining error, by cause: (1) the model is low on the deeper and wider held-out models (e.g. the "
              "9-layer deep autoencoder), a per-layer cost the fit set does not separate from the kernel start; "
              "(2) where a first layer's cascade is 8 long, nn2aie's legality model gives a memory tile 6 DMA "
              "channels per direction (AM020) and splits that input over two memory tiles and two PLIOs, where "
              "the peer's design reads it from one memory tile fed by one PLIO: nn2aie models its own (faster) "
              "design, not the peer's (qubit-readout designs with 8-long cascades against those with 4-long "
              "ones); (3) within a model the designs often differ by only a few per cent (VAE-large: 1450-1560 "
              "ns), about the model's residual, so their ranking is only partly reproduced."]
    lines += ["", "| model | set | cas_length x cas_num per layer | tiles | aiesim ns | modelled ns | error |",
              "|---|---|---|---|---|---|---|"]
    per_design = []
    for r, mod in zip(rows, model, strict=True):
        err = 100 * (mod - r["aiesim_ns"]) / r["aiesim_ns"]
        label = "fitted" if r["model_name"] in FIT_MODELS else "held-out"
        lines.append(f"| {r['model_name']} | {label} | {r['layer_parallelism']} | {r['active_core_count']} | "
                     f"{r['aiesim_ns']:.1f} | {mod:.1f} | {err:+.1f} % |")
        per_design.append({"model": r["model_name"], "set": label, "parallelism": r["layer_parallelism"],
                           "tiles": int(r["active_core_count"]), "aiesim_ns": r["aiesim_ns"],
                           "modelled_ns": round(float(mod), 1), "error_pct": round(float(err), 2)})
    (out / "aiesim_compare.md").write_text("\n".join(lines) + "\n")
    (out / "aiesim_compare.json").write_text(json.dumps(
        {"machine": m, "catalog_overheads": catalog.__dict__, "refit": refit.__dict__ if refit else None,
         "summary": stats, "before_calibration": stats_before, "designs": per_design}, indent=1) + "\n")
    print("\n".join(lines[:16]))
    print(f"wrote {out / 'aiesim_compare.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Side by side with aie4ml: compute tiles and placement wire length on the same four QDQ MLPs.

    python benchmarks/compare_aie4ml.py [--out benchmarks/results] [--venv /tmp/nn2aie-aie4ml-venv]

Writes ``compare_aie4ml.md`` and ``compare_aie4ml.json``. The models are ONNX QDQ MLPs from
``nn2aie.examples.builders.make_qdq_mlp`` (seed 7, int8, power-of-two scales). nn2aie compiles them in this
process with its defaults. aie4ml 0.2.1 (PyPI ``aie4ml[onnx]``, Apache-2.0) runs in its own virtual environment,
created on first use and never mixed with nn2aie's: a small driver calls ``aie4ml.from_onnx`` and
``AIEModel.run_pipeline()`` (every pass up to the physical plan; nothing is written and no Vitis is needed) once per
``Optimize`` mode, and reads each kernel's rectangle from ``context.ir.physical.placements`` and the dataflow edges
from ``context.ir.execution``. aie4ml needs a static batch, so its copy of each model has the batch axis set to
nn2aie's default batch (4).

Both placements are scored with the same function, ``nn2aie.passes.placement.wire_length`` at unit weights: each
producer -> consumer edge costs the horizontal distance from the producer's east end to the consumer's west end plus
both rectangles' heights above the memory-tile row; the graph input and output add their layer's height. nn2aie's
placer minimises the same hops weighted by the 32-byte words each edge moves per graph iteration; that objective and
its proven bound are reported beside the unit score. Tile counts
differ because each tool chooses every layer's parallelism its own way. Times are wall time of one run, imports
excluded (nn2aie is warmed up by one compile first): nn2aie's frontend and all passes; aie4ml's import of the ONNX
file and its whole pipeline.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import onnx

from nn2aie.api import compile_loaded
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.frontends.loader import load_model
from nn2aie.passes.pipeline import CompileOptions
from nn2aie.passes.placement import chain_edges, wire_length

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_common import BENCHMARK_MODELS, machine  # noqa: E402

MODELS = BENCHMARK_MODELS
AIE4ML = "aie4ml[onnx]==0.2.1"
AIE4ML_PART = "xcve2802-vsvh1760-2MP-e-S"  # the part nn2aie targets by default (VE2802), as aie4ml names it
AIE4ML_MODES = ("resource", "throughput", "latency")  # AIEConfig Optimize; aie4ml's default is 'resource'
AIE4ML_TIMEOUT = 1800  # seconds per (model, mode)

# Runs inside aie4ml's venv: argv = model.onnx, Optimize mode, result.json.
DRIVER = r"""
import json, sys, tempfile, time
import aie4ml

model, mode, result = sys.argv[1:4]
try:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        aie = aie4ml.from_onnx(model, {"Part": PART, "AIEConfig": {"Optimize": mode}}, output_dir=tmp)
        aie.run_pipeline()
        seconds = time.perf_counter() - start
        placements, ex = aie.context.ir.physical.placements, aie.context.ir.execution
        index = {inst.name: i for i, inst in enumerate(i for i in ex if i.name in placements)}
        edges, sources, sinks = set(), set(), set()
        for inst in ex:
            if inst.name not in index:
                continue
            for item in inst.inputs:
                value = ex.values[item.tensor]
                producers = [ex.values[s].producer for s in value.view.sources] if value.view else [value.producer]
                for p in producers:
                    if p in index:
                        edges.add((index[p], index[inst.name]))
                    else:
                        sources.add(index[inst.name])
            if set(inst.outputs) & set(ex.graph_outputs):
                sinks.add(index[inst.name])
        out = {"seconds": seconds, "layers": [dict(name=n, **placements[n]) for n in index],
               "edges": sorted(edges), "sources": sorted(sources), "sinks": sorted(sinks)}
except Exception as exc:
    out = {"error": f"{type(exc).__name__}: {exc}"}
with open(result, "w") as f:
    json.dump(out, f)
"""


def ensure_aie4ml(venv: pathlib.Path) -> tuple[pathlib.Path | None, str]:
    """The venv's python and "aie4ml-version python-version", or (None, why it could not be installed)."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import aie4ml, platform; print(aie4ml.__version__, platform.python_version())"]

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=1800)

    try:
        if python.exists() and (found := run(probe)).returncode == 0 and found.stdout.startswith("0.2.1 "):
            return python, found.stdout.strip()
        for cmd in (["python3", "-m", "venv", str(venv)],
                    [str(python), "-m", "pip", "install", "-q", AIE4ML, "onnxruntime"]):
            done = run(cmd)
            if done.returncode != 0:
                lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
                return None, f"`{' '.join(cmd[:4])}` failed: {lines[-1][:200]}"
        found = run(probe)
        return (python, found.stdout.strip()) if found.returncode == 0 else (None, found.stderr.strip()[-200:])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def score(rects: list[dict], edges: list, sources: list[int], sinks: list[int]) -> int:
    """nn2aie's placement objective applied to any list of rectangles {col, row, width}."""
    layers = [SimpleNamespace(cas_length=r["width"]) for r in rects]
    origins = [(r["col"], r["row"]) for r in rects]
    return wire_length(layers, origins, [tuple(e) for e in edges], sources, sinks)


def run_nn2aie(model: onnx.ModelProto) -> dict:
    start = time.perf_counter()
    compiled = compile_loaded(load_model(model))
    seconds = time.perf_counter() - start
    plan = compiled.plan
    rects = []
    for layer in plan.layers:
        tiles = [k for k in plan.kernels if k.layer == layer.op]
        rects.append({"name": layer.op, "col": min(k.col for k in tiles), "row": min(k.row for k in tiles),
                      "width": layer.cas_length, "height": layer.cas_num})
    # nn2aie minimises hops weighted by the bytes each edge moves; aie4ml's placement is scored in plain hops, so
    # both tools get the unit-weight score here and the plan's own (weighted) objective is reported beside it
    wl = score(rects, chain_edges(plan.layers), [0], [len(rects) - 1])
    return {"seconds": seconds, "tiles": len(plan.kernels), "layers": rects, "wire_length": wl,
            "objective": plan.placement["wire_length"], "lower_bound": plan.placement["lower_bound"],
            "gap": plan.placement["gap"], "method": plan.placement["method"]}


def run_aie4ml(python: pathlib.Path, model: onnx.ModelProto, mode: str, tmp: pathlib.Path,
               batch: int | None = None, wires: bool = True) -> dict:
    """aie4ml's result on ``model`` in its own interpreter (``DRIVER``), with the batch axis fixed to ``batch``
    (nn2aie's default batch if None): its layers' rectangles and tile count, and with ``wires`` the wire length
    scored as nn2aie scores its own -- or the error it gave."""
    batch = CompileOptions().batch if batch is None else batch
    static = onnx.ModelProto()
    static.CopyFrom(model)
    for value in [*static.graph.input, *static.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = batch  # aie4ml refuses dynamic shapes
    path, result = tmp / f"model_b{batch}.onnx", tmp / f"{mode}_b{batch}.json"
    onnx.save(static, path)
    result.unlink(missing_ok=True)  # a driver that dies must not leave the last model's result to be read
    driver = DRIVER.replace("PART", repr(AIE4ML_PART))
    try:
        done = subprocess.run([str(python), "-c", driver, str(path), mode, str(result)], capture_output=True,
                              text=True, timeout=AIE4ML_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {AIE4ML_TIMEOUT} s"}
    if not result.exists():
        return {"error": f"driver exited {done.returncode}: {done.stderr.strip()[-300:]}"}
    out = json.loads(result.read_text())
    if "error" not in out:
        out["tiles"] = sum(r["width"] * r["height"] for r in out["layers"])
        if wires:
            out["wire_length"] = score(out["layers"], out["edges"], out["sources"], out["sinks"])
    return out


def shapes(rects: list[dict]) -> str:
    return " ".join(f"{r['width']}x{r['height']}" for r in rects)


def markdown(meta: dict, rows: list[dict]) -> str:
    lines = [
        "# nn2aie next to aie4ml: compute tiles and placement wire length",
        "",
        f"Date {meta['date']}; machine: {meta['cpu']} ({meta['cores']} cores); Python {meta['python']}; "
        f"nn2aie {meta['nn2aie']}; aie4ml {meta['aie4ml']} (own venv, Python {meta.get('aie4ml_python', '-')}). "
        "Regenerate: `python benchmarks/compare_aie4ml.py`.",
        "",
        "Wire length (nn2aie's placement objective at unit weights, applied to both tools' placements): for each "
        "producer -> consumer edge, the columns from the producer rectangle's east end to the consumer's west end "
        "plus both rectangles' rows above the memory-tile row, plus the first and last layers' rows. In brackets, "
        "what nn2aie's placer minimises: the same hops weighted by the 32-byte words each edge moves per graph "
        "iteration, with CP-SAT's proven lower bound and gap. Tile counts differ "
        "because each tool picks each layer's parallelism differently: nn2aie's default is the fewest tiles whose "
        "per-tile weights fit one 16 KB bank; aie4ml searches designs by its Optimize mode (default 'resource': "
        "fewest tiles, then memory-tile legs, then latency). Same models, batch 4, target VE2802 (xcve2802) for "
        "both; aie4ml run without Vitis up to its physical plan (`AIEModel.run_pipeline()`). Seconds: wall time "
        "of one run, imports excluded. Notes give each layer's rectangle as columns x rows (cas_length x cas_num).",
        "",
        "Caveats: aie4ml minimises its own objective (face-to-face distance plus a small row bias), not this one. "
        "aie4ml pins a kernel's input buffers in its west neighbour's memory, so a layer whose west neighbour "
        "belongs to another layer must share that buffer or leave a column free (the 1024 MLP's one-column gaps); "
        "the free columns count in the wire length but not in the tiles, which count kernels only.",
        "",
        "| model | nn2aie tiles | nn2aie wire length (weighted objective, bound, gap) | nn2aie seconds "
        "| aie4ml mode | aie4ml tiles | aie4ml wire length | aie4ml seconds | notes |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for row in rows:
        ours = row["nn2aie"]
        for i, (mode, theirs) in enumerate(row["aie4ml"].items()):
            first = i == 0
            cells = [row["model"], ours["tiles"],
                     f"{ours['wire_length']} ({ours['objective']}, {ours['lower_bound']}, {ours['gap']:.2f})",
                     f"{ours['seconds']:.2f}"]
            cells = [str(c) if first else "" for c in cells]
            label = f"{mode} (default)" if mode == AIE4ML_MODES[0] else mode
            if "error" in theirs:
                cells += [label, "—", "—", "—", theirs["error"][:160].replace("|", "/").replace("\n", " ")]
            else:
                note = f"nn2aie {shapes(ours['layers'])}; " if first else ""
                cells += [label, str(theirs["tiles"]), str(theirs["wire_length"]), f"{theirs['seconds']:.1f}",
                          f"{note}aie4ml {shapes(theirs['layers'])}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    ap.add_argument("--venv", type=pathlib.Path, default=pathlib.Path("/tmp/nn2aie-aie4ml-venv"),
                    help="aie4ml's own virtual environment (created when missing)")
    args = ap.parse_args()

    meta = machine() | {"date": datetime.date.today().isoformat()}
    python, version = ensure_aie4ml(args.venv)
    if python:
        meta["aie4ml"], meta["aie4ml_python"] = version.split()
    else:
        meta["aie4ml"] = f"not installable: {version}"
    print(f"aie4ml: {meta['aie4ml']}", flush=True)
    run_nn2aie(make_qdq_mlp(MODELS["jet tagger 16-64-32-32-5"], seed=7))  # warm-up: lazy imports not timed
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, sizes in MODELS.items():
            model = make_qdq_mlp(sizes, seed=7)
            row = {"model": name, "sizes": sizes, "nn2aie": run_nn2aie(model), "aie4ml": {}}
            for mode in AIE4ML_MODES:
                row["aie4ml"][mode] = (run_aie4ml(python, model, mode, pathlib.Path(tmp)) if python
                                       else {"error": meta["aie4ml"]})
                print(f"{name} {mode}: nn2aie {row['nn2aie']['tiles']} tiles wl {row['nn2aie']['wire_length']}; "
                      f"aie4ml {row['aie4ml'][mode].get('tiles')} tiles wl {row['aie4ml'][mode].get('wire_length')}"
                      f" {row['aie4ml'][mode].get('error', '')}", flush=True)
            rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare_aie4ml.md").write_text(markdown(meta, rows))
    (args.out / "compare_aie4ml.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out / 'compare_aie4ml.md'} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

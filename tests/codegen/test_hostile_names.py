"""Hostile names compile to valid C++: every emitted .cc/.cpp/.h passes ``g++ -fsyntax-only``.

Models whose graph, node and tensor names are C++ keywords, names of nn2aie's own symbols, comment terminators,
quotes, backslashes, newlines, trigraphs, Unicode, leading digits, 300-character names and names that collide after
sanitising are compiled end to end (ONNX QDQ frontend) and, bypassing the frontend's own sanitising, by renaming
every name in a compiled plan. The kernels compile against nn2aie's AIE-API emulation header, graph.h/graph.cpp
against a syntax-only stand-in of the ADF graph API (tests/codegen/adf_stub/adf.h).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from nn2aie.api import check_bit_exact, compile_path, default_inputs, write_project_atomic
from nn2aie.codegen.project import c_identifier, comment_text, expected_file, plio_files, write_project
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.ir.physical import Endpoint
from nn2aie.sim.native.harness import INCLUDE_DIR

GXX = shutil.which("g++")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ not found: the syntax check of the emitted C++ needs a "
                                                     "C++20 compiler (apt-get install g++)")
STUB_DIR = pathlib.Path(__file__).resolve().parent / "adf_stub"
# -Werror=comment: a // comment continued onto the next line by a backslash; -Werror=trigraphs: the same with ??/
FLAGS = ["-std=c++20", "-fsyntax-only", "-x", "c++", "-D__X86SIM__", "-Wall", "-Werror=comment", "-Werror=trigraphs",
         "-I", str(STUB_DIR), "-I", str(INCLUDE_DIR)]

HOSTILE = [
    "class", "int", "main", "namespace", "nn2aie_graph", "Nn2aieGraph", "DenseL0", "DenseRole", "dense_l0",
    "W_l0_c0_p0", "plio_in0", "mt_x_mt", "NN2AIE_GRAPH_H", "ITERATIONS", "__reserved", "_Upper", "int8",
    'a "quoted" name', "back\\slash\\", "*/ int x; /*", "// line comment", "multi\nline\r\nname\\",
    "ünïcødé 名前 🙂", "0leading_digit", "x" * 300, "a-b", "a_b", "a b", "a.b", "end ??/", "#define X 1",
    "#include <evil>", "\t", "std::vector<int>", "$(shell false)", "`backtick`", "%s%n", "${x}", "$x$", "a\x00b",
]


def _hostile_names(n: int, offset: int = 0) -> list[str]:
    """``n`` distinct hostile strings; repeats get zero-width spaces, which sanitise to nothing (collisions)."""
    return [HOSTILE[(i + offset) % len(HOSTILE)] + "\u200b" * ((i + offset) // len(HOSTILE)) for i in range(n)]


def hostile_model(sizes: list[int], layer_names: list[str], graph_name: str, offset: int = 0,
                  **kwargs) -> onnx.ModelProto:
    """``make_qdq_mlp`` with every tensor and node renamed to hostile strings; the MatMul (layer) nodes get
    ``layer_names``."""
    model = make_qdq_mlp(sizes, name=graph_name, **kwargs)
    g = model.graph
    tensors = sorted({t for n in g.node for t in (*n.input, *n.output) if t} | {i.name for i in g.initializer})
    rename = dict(zip(tensors, _hostile_names(len(tensors), offset), strict=True))
    for n in g.node:
        n.input[:] = [rename.get(t, t) for t in n.input]
        n.output[:] = [rename.get(t, t) for t in n.output]
    for init in g.initializer:
        init.name = rename[init.name]
    for vi in (*g.input, *g.output, *g.value_info):
        vi.name = rename[vi.name]
    matmuls = [n for n in g.node if n.op_type == "MatMul"]
    others = [n for n in g.node if n.op_type != "MatMul"]
    for n, name in zip(matmuls, layer_names, strict=True):
        n.name = name
    spare = [s for s in _hostile_names(len(others) + len(layer_names), offset + 7) if s not in layer_names]
    for n, name in zip(others, spare, strict=False):  # node names must be unique (onnxruntime refuses repeats)
        n.name = name
    onnx.checker.check_model(model)
    return model


def cxx_files(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".cc", ".cpp", ".h"))


def syntax_errors(project: pathlib.Path, files: list[pathlib.Path] | None = None) -> list[str]:
    """g++ -fsyntax-only on every emitted C++ file of the project (or ``files``), in parallel; the failures'
    messages."""
    src = project / "src"
    files = cxx_files(project) if files is None else files

    def check(path: pathlib.Path) -> str | None:
        proc = subprocess.run([GXX, *FLAGS, "-I", str(src), str(path)], capture_output=True, text=True, timeout=300)
        if proc.returncode == 0:
            return None
        return f"{path.relative_to(project)}:\n" + "\n".join(proc.stderr.splitlines()[:30])

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return [msg for msg in pool.map(check, files) if msg]


def _assert_inert(project: pathlib.Path) -> None:
    """Outside the data files, emitted sources are printable ASCII and include only what nn2aie includes."""
    for path in cxx_files(project):
        text = path.read_text(encoding="utf-8")
        assert text.isascii() and "\r" not in text, path
        for line in text.splitlines():
            if line.startswith("#include"):
                assert re.fullmatch(r'#include (<[\w/.]+>|"(kernels|data)/\w+\.h"|"\w+\.h")', line), (path, line)
            if line.startswith("#define"):
                assert re.fullmatch(r"#define (NN2AIE_\w+|chess_\w+(\(\.\.\.\))?)", line), (path, line)


MODELS = {
    # cascades, a broadcast read, several memory-tile buffers; layer names that collide after sanitising
    "keywords_and_collisions": ([384, 256, 200, 10], ["class", "a-b", "a_b"],
                                'model */ "q" \\ ??/\n#include <evil> ünï', 0, {}),
    # int16 activations; 300-character, comment-closing and leading-digit layer names
    "long_and_comment_names": ([40, 24, 9, 7], ["x" * 300, "*/ int x; /*", "0leading"], "int", 13,
                               {"act_bits": 16}),
}


@needs_gxx
@pytest.mark.parametrize("case", [
    "keywords_and_collisions",
    pytest.param("long_and_comment_names", marks=pytest.mark.slow),  # the plan test below covers these names too
])
def test_hostile_onnx_names_compile_to_valid_cxx(case, tmp_path):
    sizes, layers, graph_name, offset, kwargs = MODELS[case]
    model = hostile_model(sizes, layers, graph_name, offset, **kwargs)
    path = tmp_path / "hostile.onnx"
    onnx.save(model, path)
    compiled = compile_path(path)
    x = default_inputs(compiled, events=16)
    checked = check_bit_exact(compiled, x)
    assert checked["bit_exact"], checked
    out = tmp_path / "proj"
    write_project_atomic(compiled, out, x, checked=checked)
    assert len(compiled.plan.layers) == len(layers)
    assert len({e.op for e in compiled.plan.layers}) == len(layers)  # collisions were made unique
    _assert_inert(out)
    errors = syntax_errors(out)
    assert not errors, "\n\n".join(errors)


def _rename_plan(plan) -> None:
    """Give every name in the plan a hostile, unsanitised value (as a frontend without sanitising would)."""
    names = iter(_hostile_names(1000, 3))
    layer = {e.op: next(names) for e in plan.layers}
    kernel = {k.name: next(names) for k in plan.kernels}
    plio = {p.name: next(names) for p in plan.plios}
    tensor = {t: next(names) for t in plan.tensor_types}
    # "$...$" would be mathtext in the placement picture; ??/ at the end of a // line, a trigraph line splice
    plan.graph_name = "graph $\\frac{$ ??/"
    for e in plan.layers:
        e.op = layer[e.op]
    for k in plan.kernels:
        k.name, k.layer = kernel[k.name], layer[k.layer]
        k.cascade_from = kernel.get(k.cascade_from) if k.cascade_from else None
        k.cascade_to = kernel.get(k.cascade_to) if k.cascade_to else None
    for p in plan.plios:
        p.name, p.tensor, p.file = plio[p.name], tensor.get(p.tensor, p.tensor), "data/" + next(names) + ".txt"
    for sb in plan.shared_buffers:
        sb.name, sb.tensor = next(names), tensor.get(sb.tensor, sb.tensor)
        for acc in (*sb.writers, *sb.readers):
            acc.endpoints = [Endpoint(ep.kind, (kernel if ep.kind == "kernel" else plio)[ep.name])
                             for ep in acc.endpoints]
    plan.direct_links = [dataclasses.replace(d, tensor=tensor.get(d.tensor, d.tensor), src=kernel[d.src],
                                             dst=kernel[d.dst]) for d in plan.direct_links]
    plan.tensor_types = {tensor[t]: v for t, v in plan.tensor_types.items()}
    plan.tensor_shapes = {tensor[t]: v for t, v in plan.tensor_shapes.items()}
    plan.input_tensors = [tensor[t] for t in plan.input_tensors]
    plan.output_tensors = [tensor[t] for t in plan.output_tensors]


@needs_gxx
def test_hostile_plan_names_compile_to_valid_cxx(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(make_qdq_mlp([384, 256, 200, 10], seed=2), path)
    compiled = compile_path(path)
    plan = compiled.plan
    x = compiled.quantize(default_inputs(compiled, events=8))
    _rename_plan(plan)
    assert any(k.has_cascade_in for k in plan.kernels) and plan.direct_links or len(plan.shared_buffers) > 2
    out = tmp_path / "proj"
    out.mkdir()
    write_project(plan, out, x, {"model": plan.graph_name})
    _assert_inert(out)
    errors = syntax_errors(out)
    assert not errors, "\n\n".join(errors)
    idents = re.findall(r"^  adf::\w+(?:<\w+>)? (\S+);$", (out / "src" / "graph.h").read_text(), flags=re.M)
    assert len(idents) == len(set(idents)) == len(plan.kernels) + len(plan.plios) + len(plan.shared_buffers)
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", i) and "__" not in i for i in idents)
    assert "graph $\\frac{$ ??/" in (out / "report" / "placement.svg").read_text()  # drawn as plain text


@needs_gxx
def test_the_syntax_check_can_fail(tmp_path):
    """Controls: the stub ADF API refuses what real ADF refuses (a reversed connection, tiling fields out of
    declaration order) and a backslash at the end of a // comment fails the check."""
    path = tmp_path / "m.onnx"
    onnx.save(make_qdq_mlp([16, 24, 8], seed=2), path)
    compiled = compile_path(path)
    out = tmp_path / "proj"
    write_project_atomic(compiled, out, np.zeros((4, 16), np.float32))
    assert syntax_errors(out, [out / "src" / "graph.cpp"]) == []
    graph_h = out / "src" / "graph.h"
    good = graph_h.read_text()
    bad = {
        "reversed connect": re.sub(r"adf::connect\((\w+\.out\[0\]), (\w+\.in\[0\])\);", r"adf::connect(\2, \1);",
                                   good, count=1),
        "tiling field order": good.replace(".buffer_dimension = {16, 4}, .tiling_dimension = {16, 4}",
                                           ".tiling_dimension = {16, 4}, .buffer_dimension = {16, 4}", 1),
        "comment continued": good.replace("// Model : ", "// Model : \\\n", 1),
        "keyword as identifier": good.replace("adf::kernel l0_c0_p0;", "adf::kernel class;", 1),
    }
    for what, text in bad.items():
        assert text != good, what
        graph_h.write_text(text)
        errors = syntax_errors(out, [out / "src" / "graph.cpp"])  # includes graph.h
        assert errors and "graph.h" in errors[0], what
    graph_h.write_text(good)


def test_identifiers_never_hide_names_the_sources_use():
    for name in ("int8", "uint32_t", "acc32", "DenseRole", "DenseL3", "dense_l0", "W_l0_c0_p0", "B_x",
                 "NN2AIE_GRAPH_H", "REGISTER_FUNCTION", "chess_unroll_loop", "ITERATIONS", "run", "init", "end",
                 "linux", "class"):
        assert c_identifier(name) == "n_" + name, name
    assert c_identifier("l0_c0_p0") == "l0_c0_p0" and c_identifier("plio_in0") == "plio_in0"
    assert c_identifier("x" * 300) == "x" * 60
    assert c_identifier("dense_l" + "1" * 60 + "a") == "n_dense_l" + "1" * 53  # checked after the cut
    assert comment_text("end ??/") == "end ?<U+003F>/" and "??" not in comment_text("a???b????")


def test_plio_files_are_unique_short_and_case_safe():
    plios = [SimpleNamespace(name=n, file=f) for n, f in [
        ("p0", "data/plio_in0.txt"), ("p1", "data/PLIO_IN0.txt"), ("p2", "data/" + "y" * 300 + ".txt"),
        ("p3", "data/expected_plio_in0.txt"), ("p4", "../escape.txt"), ("p5", "data/plio_in0_1.txt")]]
    idents = {"p0": "p0", "p1": "p1", "p2": "yyy", "p3": "p3", "p4": "p4", "p5": "p5"}
    files = plio_files(SimpleNamespace(plios=plios), idents)
    assert files["p0"] == "data/plio_in0.txt"  # plain names are kept
    assert files["p2"] == "data/yyy.txt" and files["p4"] == "data/p4.txt"
    taken = [f.lower() for f in files.values()] + [expected_file(f).lower() for f in files.values()]
    assert len(taken) == len(set(taken)), files

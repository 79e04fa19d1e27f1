"""Golden-structure tests of the generated Vitis project (no Vitis needed): every plan object appears in the
sources exactly as planned, data files round-trip, and output is byte-identical across writes."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from nn2aie.codegen.data_files import (  # noqa: E402
    gather_columns,
    parse_plio_text,
    plio_rows,
    plio_specs,
    read_plio_file,
    rows_from_values,
)
from nn2aie.codegen.project import c_identifier, comment_text, write_project  # noqa: E402
from nn2aie.devices import get_device  # noqa: E402
from nn2aie.ir.physical import dtype_bytes  # noqa: E402
from nn2aie.ir.tiling import TilingDescriptor, Traversal  # noqa: E402
from nn2aie.passes.pipeline import CompileOptions, compile_graph  # noqa: E402
from nn2aie.sim.emulator import Emulator  # noqa: E402

from helpers import random_codes, random_mlp_graph  # noqa: E402

CASES = {
    "jet": ([16, 64, 32, 32, 5], {}, {}),
    "cascade4x2": ([64, 128, 10], {"overrides": {"dense0": {"cas_length": 4, "cas_num": 2}}}, {}),
    "int16_batch8": ([40, 24, 9], {"batch": 8}, {"act_bits": 16}),
    "int16x16_acc64": ([40, 24], {}, {"act_bits": 16, "w_bits": 16}),
    "padded_read": ([20, 16, 5], {}, {}),  # K=20 read as 24 columns: the host pads the input rows to 24
    "split_input": ([64, 48, 5], {"overrides": {"dense0": {"cas_length": 8, "cas_num": 1}}}, {}),  # 2 PLIOs in
    "split_output": ([16, 64], {"overrides": {"dense0": {"cas_length": 1, "cas_num": 8}}}, {}),  # 2 PLIOs out
}
EVENTS = 13  # not a multiple of the batch: exercises the padding rows


def _compile(case: str):
    sizes, options, graph_kw = CASES[case]
    graph = random_mlp_graph(sizes, **graph_kw)
    plan, _ = compile_graph(graph, CompileOptions(**options))
    return graph, plan


def _write(plan, x, out: pathlib.Path) -> pathlib.Path:
    out.mkdir(parents=True, exist_ok=True)
    write_project(plan, out, x, {"model": "test", "events": int(x.shape[0])})
    return out


@pytest.fixture(scope="module", params=sorted(CASES))
def project(request, tmp_path_factory):
    graph, plan = _compile(request.param)
    x = random_codes(graph, EVENTS)
    out = _write(plan, x, tmp_path_factory.mktemp(request.param) / "proj")
    return plan, x, out, (out / "src" / "graph.h").read_text()


# -- parsing helpers -----------------------------------------------------------------------------------
def _nums(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _parse_tiling(text: str) -> TilingDescriptor:
    def field(name):
        m = re.search(rf"\.{name} = \{{([^{{}}]*)\}}", text)
        return _nums(m.group(1)) if m else None

    trav = tuple(Traversal(int(d), int(s), int(w)) for d, s, w in re.findall(
        r"\{\.dimension = (-?\d+), \.stride = (-?\d+), \.wrap = (-?\d+)\}", text))
    return TilingDescriptor(field("buffer_dimension"), field("tiling_dimension"), field("offset"), trav,
                            field("boundary_dimension"))


def _member(graph_h: str, kind: str) -> list[str]:
    return re.findall(rf"^  {kind} (\w+);$", graph_h, flags=re.M)


# -- structure -------------------------------------------------------------------------------------------
def test_files_present(project):
    plan, _, out, _ = project
    rel = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for name in ("src/graph.h", "src/graph.cpp", "Makefile", "aie.cfg", "README.md", "summary.json", "plan.json"):
        assert name in rel
    for p in plan.plios:  # the simulator writes the output PLIO files; we ship what they must hold
        assert (p.file in rel) == (p.direction == "in")
        assert ("data/expected_" + p.file.removeprefix("data/") in rel) == (p.direction == "out")
    used = sorted({i for i, e in enumerate(plan.layers) if plan.kernels_of(e.op)})
    role_sources = [f"src/kernels/dense_l{i}_{k.role}.cc" for i in used for k in plan.kernels_of(plan.layers[i].op)]
    assert sorted(r for r in rel if r.startswith("src/kernels/")) == sorted(
        [f"src/kernels/dense_l{i}.h" for i in used] + [f"src/kernels/dense_l{i}_impl.h" for i in used]
        + sorted(set(role_sources)))
    assert sorted(r for r in rel if r.startswith("src/data/")) == [f"src/data/weights_l{i}.h" for i in used]


def test_every_kernel_placed_once_at_its_tile(project):
    plan, _, _, graph_h = project
    placed = re.findall(r"adf::location<adf::kernel>\((\w+)\) = adf::tile\((\d+), (\d+)\);", graph_h)
    assert sorted(name for name, _, _ in placed) == sorted(k.name for k in plan.kernels)
    tiles = {name: (int(c), int(r)) for name, c, r in placed}
    for k in plan.kernels:
        assert tiles[k.name] == (k.col, k.row)
        assert graph_h.count(f"adf::source({k.name}) = ") == 1
        assert graph_h.count(f"adf::runtime<adf::ratio>({k.name}) = 0.9;") == 1
        assert graph_h.count(f"adf::location<adf::stack>({k.name}) = ") == 1
    assert _member(graph_h, "adf::kernel") == [k.name for k in plan.kernels]


def test_cascades(project):
    plan, _, _, graph_h = project
    links = re.findall(r"adf::connect<adf::cascade>\((\w+)\.out\[0\], (\w+)\.in\[1\]\);", graph_h)
    assert len(links) == graph_h.count("adf::connect<adf::cascade>")
    assert len(links) == sum(e.cas_num * (e.cas_length - 1) for e in plan.layers)
    for a, b in links:
        ka, kb = plan.kernel(a), plan.kernel(b)
        assert (ka.layer, ka.chain, ka.position + 1) == (kb.layer, kb.chain, kb.position)
        assert (kb.col, kb.row) == (ka.col + 1, ka.row)  # west -> east neighbour


def test_shared_buffers_match_plan_descriptors(project):
    plan, _, _, graph_h = project
    created = re.findall(r"(\w+) = adf::shared_buffer<(\w+)>::create\(\{([\d, ]+)\}, (\d+), (\d+)\);", graph_h)
    assert len(created) == len(plan.shared_buffers)
    writes = re.findall(r"adf::write_access\((\w+)\.in\[(\d+)\]\) = adf::tiling\((.*)\);$", graph_h, flags=re.M)
    reads = re.findall(r"adf::read_access\((\w+)\.out\[(\d+)\]\) = adf::tiling\((.*)\);$", graph_h, flags=re.M)
    assert len(writes) == sum(len(sb.writers) for sb in plan.shared_buffers)
    assert len(reads) == sum(len(sb.readers) for sb in plan.shared_buffers)
    for (ident, dtype, dims, n_in, n_out), sb in zip(created, plan.shared_buffers, strict=True):
        assert dtype == sb.dtype and _nums(dims) == tuple(sb.dims)
        assert (int(n_in), int(n_out)) == (len(sb.writers), len(sb.readers))
        assert f"adf::num_buffers({ident}) = 2;" in graph_h
        for i, acc in enumerate(sb.writers):
            got = [_parse_tiling(t) for s, port, t in writes if s == ident and int(port) == i]
            assert got == [acc.tiling]
            assert f"adf::connect({acc.endpoints[0].name}.out[0], {ident}.in[{i}]);" in graph_h
        for j, acc in enumerate(sb.readers):
            got = [_parse_tiling(t) for s, port, t in reads if s == ident and int(port) == j]
            assert got == [acc.tiling]
            for ep in acc.endpoints:  # broadcast: one connect per endpoint, same port
                assert graph_h.count(f"adf::connect({ident}.out[{j}], {ep.name}.in[0]);") == 1
        half = -(-int(np.prod(sb.dims)) * dtype_bytes(sb.dtype) // 32) * 32  # pong half, 32-byte aligned
        assert (f"adf::location<adf::buffer>({ident}) = {{adf::address({sb.col}, {sb.row}, 0), "
                f"adf::address({sb.col}, {sb.row}, {half})}};") in graph_h


def test_case_coverage():
    """The cases above really exercise padding, broadcast reads and multi-PLIO splits."""
    plans = {case: _compile(case)[1] for case in CASES}
    # a graph input is padded on the host to every column its readers read: no zero-padded DMA read (no extra BDs)
    padded = plans["padded_read"]
    assert [p.row_width for p in padded.plios if p.direction == "in"] == [24]
    assert not any(a.tiling.boundary_dimension for sb in padded.shared_buffers if sb.tensor in padded.input_tensors
                   for a in sb.readers)
    assert any(len(a.endpoints) > 1 for sb in plans["cascade4x2"].shared_buffers for a in sb.readers)
    assert sum(p.direction == "in" for p in plans["split_input"].plios) == 2
    assert sum(p.direction == "out" for p in plans["split_output"].plios) == 2
    assert plans["int16_batch8"].layers[0].acc == "acc32" and plans["int16x16_acc64"].layers[0].acc == "acc64"
    assert plans["jet"].direct_links


def test_direct_links_and_plios(project):
    plan, _, _, graph_h = project
    for link in plan.direct_links:
        assert graph_h.count(f"adf::connect({link.src}.out[0], {link.dst}.in[0]);") == 1
    for p in plan.plios:
        kind = "input_plio" if p.direction == "in" else "output_plio"
        assert (f'{p.name} = adf::{kind}::create("{p.name}", adf::plio_{p.bits}_bits, "{p.file}", '
                f"{p.freq_mhz:g});") in graph_h


def test_kernel_memory_constraints(project):
    plan, _, _, graph_h = project
    in_place = {link.dst for link in plan.direct_links if link.in_place}
    for k in plan.kernels:
        mem = {b.name: b.offset for b in k.memory}
        a = f"adf::address({k.col}, {k.row}, "
        assert f"adf::location<adf::parameter>({k.name}.param[0]) = {a}{mem['weights']});" in graph_h
        if "bias" in mem:
            assert f"adf::location<adf::parameter>({k.name}.param[1]) = {a}{mem['bias']});" in graph_h
        assert f"adf::location<adf::stack>({k.name}) = {a}{mem['stack']});" in graph_h
        if k.name in in_place:  # the input is the west/north/south neighbour's output buffer: nothing here
            assert "in_ping" not in mem and f"adf::location<adf::buffer>({k.name}.in[0])" not in graph_h
        else:
            assert (f"adf::location<adf::buffer>({k.name}.in[0]) = {{{a}{mem['in_ping']}), {a}{mem['in_pong']})}};"
                    in graph_h)
        if k.has_output:
            assert (f"adf::location<adf::buffer>({k.name}.out[0]) = {{{a}{mem['out_ping']}), "
                    f"{a}{mem['out_pong']})}};") in graph_h


def test_kernel_sources_follow_layers(project):
    plan, _, out, graph_h = project
    for i, e in enumerate(plan.layers):
        roles = {k.role for k in plan.kernels_of(e.op)}
        h = (out / "src" / "kernels" / f"dense_l{i}.h").read_text()
        assert set(re.findall(rf"class DenseL{i}<DenseRole::(\w+)>", h)) == roles
        for role in roles:  # one source per role, defining that role's run only
            cc = (out / "src" / "kernels" / f"dense_l{i}_{role}.cc").read_text()
            assert re.findall(rf"void DenseL{i}<DenseRole::(\w+)>::run\(", cc) == [role]
            assert f'#include "dense_l{i}_impl.h"' in cc
        for k in plan.kernels_of(e.op):  # each tile compiles the source of its own role
            assert re.search(rf'adf::source\(\w+\) = "kernels/dense_l{i}_{k.role}\.cc";', graph_h), k.name
        for name, value in (("BATCH", e.batch), ("K_SLICE", e.k_slice), ("N_SLICE", e.n_slice),
                            ("MMUL_M", e.mmul[0]), ("MMUL_K", e.mmul[1]), ("MMUL_N", e.mmul[2]),
                            ("N_ACC", e.n_accumulators), ("M_ACC", e.m_accumulators), ("SHIFT", e.shift),
                            ("CLAMP_LO", e.clamp_lo),
                            ("CLAMP_HI", e.clamp_hi)):
            assert re.search(rf"constexpr int {name} = {value};", h), name
        assert f"using acc_tag = {e.acc};" in h
        cc = (out / "src" / "kernels" / f"dense_l{i}_impl.h").read_text()  # the body the role sources share
        assert f"aie::rounding_mode::{e.rounding}" in cc and f"aie::saturation_mode::{e.saturation}" in cc
        assert f"WORD_LANES = {512 // int(e.acc[3:])};" in cc
        # register blocking: one mmul object per accumulator, M_ACC A loads and N_ACC B loads per K trip
        assert cc.count("MM c") == e.n_accumulators * e.m_accumulators
        assert cc.count("aie::load_v<MM::size_A>") == e.m_accumulators
        assert cc.count("aie::load_v<MM::size_B>") == e.n_accumulators
        assert f'#include "kernels/dense_l{i}.h"' in graph_h


def test_weights_headers_hold_plan_arrays(project):
    plan, _, out, _ = project
    for i, e in enumerate(plan.layers):
        text = (out / "src" / "data" / f"weights_l{i}.h").read_text()
        arrays = {name: np.array(_nums(body)) for name, body in
                  re.findall(r"static const \w+ (\w+)\[\d+\] = \{([^}]*)\};", text)}
        for k in plan.kernels_of(e.op):
            assert np.array_equal(arrays[f"W_{k.name}"], k.weights)
            if k.bias is not None:
                assert np.array_equal(arrays[f"B_{k.name}"], k.bias)
            else:
                assert f"B_{k.name}" not in arrays


def test_graph_cpp_iterations(project):
    plan, x, out, _ = project
    text = (out / "src" / "graph.cpp").read_text()
    iters = -(-x.shape[0] // plan.batch)
    assert f"static constexpr int ITERATIONS = {iters};" in text
    assert "#if defined(__AIESIM__) || defined(__X86SIM__)" in text
    assert "nn2aie_graph.run(ITERATIONS);" in text


def test_cfg_and_makefile(project):
    plan, _, out, _ = project
    cfg = (out / "aie.cfg").read_text()
    assert "[aie]" in cfg and "xlopt=1" in cfg and f"pl-freq={plan.plios[0].freq_mhz:g}" in cfg
    mk = (out / "Makefile").read_text()
    for target in ("all:", "aie:", "hw:", "x86com:", "x86sim:", "aiesim:", "check:", "clean:"):
        assert re.search(rf"^{target}", mk, flags=re.M), target
    assert f"PART ?= {get_device(plan.device).vitis_part}\n" in mk and "PLATFORM ?=\n" in mk
    assert "--target=x86sim" in mk and "--target=hw" in mk and "--pkg-dir=./Work" in mk
    recipe_lines = [line for line in mk.splitlines() if line.startswith("\t")]
    assert recipe_lines and not re.search(r"^ +(\$|@|rm)", mk, flags=re.M)  # recipes are tab-indented


# -- data files ------------------------------------------------------------------------------------------
def test_input_plio_files_round_trip(project):
    plan, x, out, _ = project
    specs = [s for s in plio_specs(plan) if s.direction == "in"]
    values = {s.name: read_plio_file(out / s.file, s.dtype) for s in specs}
    for s in specs:
        per_line = s.bits // int(re.sub(r"\D", "", s.dtype))
        lines = (out / s.file).read_text().splitlines()
        assert all(len(line.split()) == per_line for line in lines)
        assert np.array_equal(rows_from_values(values[s.name], s.row_width),
                              plio_rows(x, plan.batch, s.col_start, s.row_width))
    got = gather_columns(specs, values, x.shape[1])
    rows = -(-x.shape[0] // plan.batch) * plan.batch
    assert got.shape == (rows, x.shape[1])
    assert np.array_equal(got[: x.shape[0]], x) and not got[x.shape[0]:].any()


def test_expected_files_equal_emulator(project):
    plan, x, out, _ = project
    emu = Emulator(plan)
    want = emu.run(x)
    specs = [s for s in plio_specs(plan) if s.direction == "out"]
    values = {s.name: read_plio_file(out / ("data/expected_" + s.file.removeprefix("data/")), s.dtype)
              for s in specs}
    last = plan.layers[-1]
    got = gather_columns(specs, values, last.n_padded)
    assert np.array_equal(got[: x.shape[0], : last.n], want)
    pad = x.shape[0] % plan.batch and plan.batch - x.shape[0] % plan.batch
    assert got.shape[0] == x.shape[0] + pad
    if pad:  # padding rows: what the design computes for all-zero input rows
        zeros = emu.run(np.zeros((pad, x.shape[1]), dtype=np.int64))
        assert np.array_equal(got[x.shape[0]:, : last.n], zeros)
    assert not got[:, last.n:].any()  # zero weights and bias past N


def test_simulator_output_parsing_skips_markers():
    text = "T 120 ns\n1 -2 3 4\nTLAST\n\n  5 6 7 8  \n"
    assert list(parse_plio_text(text, "int8")) == [1, -2, 3, 4, 5, 6, 7, 8]


# -- determinism and safety ------------------------------------------------------------------------------
def _tree(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_byte_identical_and_relative(tmp_path):
    graph, plan = _compile("cascade4x2")
    x = random_codes(graph, EVENTS)
    a = _tree(_write(plan, x, tmp_path / "a"))
    graph2, plan2 = _compile("cascade4x2")  # a fresh compile of the same model
    b = _tree(_write(plan2, x, tmp_path / "b"))
    assert a == b
    for name, content in a.items():
        assert str(tmp_path).encode() not in content
        if not name.endswith(".png"):  # binary
            assert b"\r\n" not in content


def test_placement_pictures_are_written(tmp_path):
    graph, plan = _compile("cascade4x2")
    out = _write(plan, random_codes(graph, EVENTS), tmp_path / "p")
    png = (out / "report" / "placement.png").read_bytes()
    svg = (out / "report" / "placement.svg").read_text()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert f"{len(plan.kernels)} compute tiles" in svg  # the title names the design (text kept as text)
    assert "Date" not in svg.split("<metadata>")[-1].split("</metadata>")[0]  # no time stamp: byte-identical


def test_no_inputs_gives_one_zero_iteration(tmp_path):
    graph, plan = _compile("jet")
    out = tmp_path / "p"
    out.mkdir()
    files = write_project(plan, out, None, {})
    assert files == sorted(files)
    spec = next(s for s in plio_specs(plan) if s.direction == "in")
    assert not read_plio_file(out / spec.file, spec.dtype).any()
    assert "ITERATIONS = 1;" in (out / "src" / "graph.cpp").read_text()


def test_hostile_model_names_stay_in_comments(tmp_path):
    graph, plan = _compile("jet")
    evil = "fc */ int x;\n#define X 1 \\"
    old = plan.layers[0].op
    plan.layers[0].op = evil
    for k in plan.kernels:
        if k.layer == old:
            k.layer = evil
    plan.graph_name = "model\n#include <evil>"
    sb = plan.shared_buffers[0]
    sb.name, sb.tensor = "in put/0 */", "in put/0 */"
    x = random_codes(graph, 4)
    out = _write(plan, x, tmp_path / "p")
    for rel, content in _tree(out).items():
        if rel.endswith(".json") or rel.startswith("report/"):  # data and pictures (SVG text is XML-escaped)
            continue
        text = content.decode()
        assert "*/ int" not in text and "in put/0 */" not in text, rel  # cannot close a block comment
        for line in text.splitlines():  # the payload never starts a line of its own
            assert not line.lstrip().startswith(("#include <evil>", "#define X", "int x;")), (rel, line)
            if "evil" in line or "int x;" in line:
                assert line.lstrip().startswith(("//", "#", "|")) or rel.endswith(".md"), (rel, line)
    graph_h = (out / "src" / "graph.h").read_text()
    idents = re.findall(r"adf::shared_buffer<\w+> (\S+);", graph_h)
    assert all(re.fullmatch(r"[A-Za-z_]\w*", i) for i in idents)


def test_text_helpers():
    assert comment_text("a*/b\nc\\d") == "a*<U+002F>b<U+000A>c<U+005C>d"
    assert c_identifier("3 in/put") == "n_3_in_put"
    assert c_identifier("class") == "n_class"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_makefile_check_target(tmp_path):
    graph, plan = _compile("jet")
    out = _write(plan, random_codes(graph, 6), tmp_path / "p")
    env = {"PATH": "/usr/bin:/bin"}
    r = subprocess.run(["make", "-s", "x86com"], cwd=out, capture_output=True, text=True, env=env)
    if shutil.which("v++", path=env["PATH"]) is None:
        assert r.returncode != 0 and "AMD Vitis (v++) not found" in r.stdout
    spec = next(s for s in plio_specs(plan) if s.direction == "out")
    expected = (out / ("data/expected_" + spec.file.removeprefix("data/"))).read_text().splitlines()
    sim = out / "aiesimulator_output" / spec.file
    sim.parent.mkdir(parents=True)
    sim.write_text("".join(f"T {i * 8} ns\n{line} \n" for i, line in enumerate(expected)) + "TLAST\n")
    r = subprocess.run(["make", "-s", "check"], cwd=out, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    expected[0] = "99 " + expected[0].split(" ", 1)[1]
    sim.write_text("\n".join(expected) + "\n")
    r = subprocess.run(["make", "-s", "check"], cwd=out, capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "DIFFERS" in r.stdout


def test_plios_are_pinned_to_their_planned_interface_column(project):
    """graph.h constrains every PLIO to the interface column the plan (and the performance model and the picture)
    assume, and that column has a PL interface on the part."""
    plan, _, _, graph_h = project
    pinned = dict(re.findall(r"adf::location<adf::PLIO>\((\w+)\) = adf::shim\((\d+)\);", graph_h))
    assert len(pinned) == len(plan.plios)
    declared = dict(re.findall(r'(\w+) = adf::(?:input|output)_plio::create\("(\w+)"', graph_h))
    by_name = {p.name: p for p in plan.plios}
    pl_cols = set(get_device(plan.device).pl_columns())
    for ident, col in pinned.items():
        plio = by_name[declared[ident]]
        assert int(col) == plio.col and plio.col in pl_cols, ident

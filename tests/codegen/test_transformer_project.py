"""The Vitis project of a transformer block (dense, views, matmul, softmax, layer norm, lookup table, eltwise add
kernels, their parameter headers and graph.h) is valid C++: every emitted file passes ``g++ -fsyntax-only``
against the ADF stub and the AIE-API emulation header, as the Vitis compiler would first parse it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_hostile_names import cxx_files, needs_gxx, syntax_errors  # noqa: E402

pytest.importorskip("brevitas")


@needs_gxx
def test_attention_block_project_compiles(tmp_path):
    from nn2aie.api import compile_loaded, write_project_atomic
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_brevitas_attention
    from nn2aie.frontends.loader import load_model
    from nn2aie.passes.pipeline import CompileOptions

    net = make_brevitas_attention(16, 16, 4)
    c = compile_loaded(load_model(export_brevitas_qonnx(net, 0, input_shape=(16, 16))), CompileOptions(batch=1))
    out = tmp_path / "prj"
    write_project_atomic(c, out)
    files = cxx_files(out)
    names = {p.name for p in files}
    for family in ("matmul", "softmax", "norm", "eltwise"):
        assert any(n.startswith(f"{family}_l") for n in names), (family, sorted(names))
    assert not syntax_errors(out), syntax_errors(out)

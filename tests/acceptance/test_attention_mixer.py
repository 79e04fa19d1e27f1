"""Transformer and mixer blocks from Brevitas (QONNX), compiled end to end: a 1-head self-attention block over 16
particles and a 4-head one over 32 (Q / K / V projections, scaled scores, softmax, the weighted sum, the output
projection, residual adds, LayerNorm, a GELU feed-forward), and an MLP-Mixer jet tagger (16 particles x 16
features, two mixer blocks: token mixing over the transposed tensor, channel mixing, LayerNorms, residuals), at
batch 1 and 4, each on 2000 random events:

- the placed design's emulator equals nn2aie's logical model exactly (``np.array_equal``);
- qonnx (the reference) equals the Brevitas forward exactly;
- against the source, only the float-defined softmax / layer norm may differ (docs/numerics.md): at most 0.1 % of
  the outputs, by a few codes where a one-code difference passes through later layers;
- every kernel co-simulates natively, also with the attention matmuls forced onto one tile per head.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from nn2aie.api import compile_loaded
from nn2aie.frontends.loader import load_model
from nn2aie.ir.evaluate import evaluate
from nn2aie.passes.pipeline import CompileOptions

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")
EVENTS = 2000
MODELS = {"attention_1head_16": (16, 1), "attention_4heads_32": (32, 4), "mixer_16x16": None}


@functools.cache
def built(name: str):
    from nn2aie.examples.brevitas_models import export_brevitas_qonnx, make_brevitas_attention, make_brevitas_mixer

    if MODELS[name] is None:
        net, shape = make_brevitas_mixer(), (16, 16)
    else:
        tokens, heads = MODELS[name]
        net, shape = make_brevitas_attention(tokens, 16, heads), (tokens, 16)
    return net, shape, load_model(export_brevitas_qonnx(net, 0, input_shape=shape))


@functools.cache
def compiled(name: str, batch: int, tiles: tuple[tuple[str, int], ...] = ()):
    """``tiles``: (op, cas_num) overrides."""
    _, _, model = built(name)
    overrides = {op: {"cas_num": n} for op, n in tiles}
    return compile_loaded(model, CompileOptions(batch=batch, overrides=overrides))


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_blocks_equal_the_logical_model_and_stay_within_a_few_codes_of_the_source(name, batch):
    net, shape, _ = built(name)
    c = compiled(name, batch)
    kinds = {op.attrs.get("op", op.kind) for op in c.model.graph.ops}
    assert {"layernorm", "lut"} <= kinds and ("matmul" in kinds) == (MODELS[name] is not None)
    x = np.random.default_rng(batch).normal(0, 1, (EVENTS, *shape)).astype(np.float32)
    codes = c.quantize(x)
    g = c.model.graph
    want = evaluate(g, {g.inputs[0]: codes.reshape(EVENTS, *g.tensor(g.inputs[0]).shape)})[g.outputs[0]]
    assert np.array_equal(c.emulate_codes(codes), want.reshape(EVENTS, -1))
    ref = c.reference(x)
    with torch.no_grad():
        assert np.array_equal(ref, net(torch.from_numpy(x)).numpy())
    diff = np.rint(np.abs(c.emulate(x).reshape(EVENTS, -1) - ref.reshape(EVENTS, -1)) / c.output_type.lsb)
    assert (diff > 0).mean() <= 1e-3 and diff.max() <= 4, ((diff > 0).mean(), diff.max())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_blocks_cosimulate_natively(name):
    _, shape, _ = built(name)
    c = compiled(name, 4)
    report = c.native_cosim(np.random.default_rng(9).normal(0, 1, (4, *shape)).astype(np.float32))
    assert len(report.kernels) == sum(e.tiles for e in c.plan.layers) and all(k.match for k in report.kernels)


def test_heads_forced_over_tiles():
    """The two attention matmuls of the 4-head block on 4 tiles each at batch 1 (one head per tile)."""
    base = compiled("attention_4heads_32", 1)
    c = compiled("attention_4heads_32", 1, tuple(sorted((op.name, 4) for op in base.model.graph.ops
                                                        if op.kind == "matmul")))
    assert all(e.pieces == 4 for e in c.plan.layers if e.family == "matmul")
    x = np.random.default_rng(4).normal(0, 1, (300, 32, 16)).astype(np.float32)
    assert np.array_equal(c.emulate(x), base.emulate(x))
    report = c.native_cosim(x[:2])
    assert all(k.match for k in report.kernels)

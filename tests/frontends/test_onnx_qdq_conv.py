"""ONNX QDQ convolutional networks quantized by onnxruntime's own ``quantize_static`` (per-channel int8 weights,
uint8 or symmetric int8 activations, float scales): Conv (padded, strided, dilated, grouped, 1-D and 2-D), MaxPool,
GlobalAveragePool, Flatten into a Gemm head, residual Add. The compiled design must give onnxruntime's codes on
>= 500 random images at batch 1 and 4 -- onnxruntime sums in float32 where nn2aie is exact, so a difference is
allowed only at a float32 tie, and the tests require none on these models -- and every kernel must co-simulate
natively."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from nn2aie.api import compile_loaded
from nn2aie.errors import UnsupportedOpError, UnsupportedQuantizationError
from nn2aie.frontends.loader import load_model
from nn2aie.ir.conv_semantics import nchw_flatten_order
from nn2aie.ir.evaluate import evaluate
from nn2aie.kernels.conv import logical as conv_logical
from nn2aie.kernels.linear_scaled import float32_tie_margin, scaled_layer
from nn2aie.kernels.registry import family_for
from nn2aie.passes.pipeline import CompileOptions

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")


class Cnn2d(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = torch.nn.Conv2d(16, 24, 3, stride=2, padding=1, dilation=1)
        self.c3 = torch.nn.Conv2d(24, 24, 3, padding=2, dilation=2, groups=2)
        self.fc = torch.nn.Linear(24 * 3 * 3, 10)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        x = torch.relu(self.c2(x))
        x = torch.relu(self.c3(x))
        return self.fc(torch.flatten(x, 1))


class Cnn1d(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv1d(4, 16, 5, padding=2)
        self.c2 = torch.nn.Conv1d(16, 32, 3, stride=2)
        self.fc = torch.nn.Linear(32, 3)

    def forward(self, x):
        x = torch.nn.functional.max_pool1d(torch.relu(self.c1(x)), 2)
        x = torch.relu(self.c2(x))
        return self.fc(torch.mean(x, dim=2))


class Residual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c0 = torch.nn.Conv2d(2, 32, 3, padding=1)
        self.c1 = torch.nn.Conv2d(32, 32, 3, padding=1)
        self.c2 = torch.nn.Conv2d(32, 32, 3, padding=1)
        self.fc = torch.nn.Linear(32, 4)

    def forward(self, x):
        x = torch.relu(self.c0(x))
        y = torch.relu(self.c1(x))
        y = self.c2(y)
        x = torch.relu(x + y)
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


class AvgPooled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16 * 3 * 3, 4)

    def forward(self, x):
        x = torch.nn.functional.avg_pool2d(torch.relu(self.c1(x)), 2)
        x = torch.nn.functional.avg_pool2d(torch.relu(self.c2(x)), 3, stride=2, padding=1)  # count_include_pad
        return self.fc(torch.flatten(x, 1))


def quantized(tmp_path, net, shape, symmetric: bool, seed: int = 0, per_channel: bool = True) -> onnx.ModelProto:
    torch.manual_seed(seed)
    net = net().eval()  # built after seeding: the same weights every run
    src, dst = tmp_path / "f32.onnx", tmp_path / "qdq.onnx"
    torch.onnx.export(net, torch.rand(1, *shape), str(src), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    rng = np.random.default_rng(seed)

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.rows = iter([{"x": rng.random((1, *shape), dtype=np.float32)} for _ in range(32)])

        def get_next(self):
            return next(self.rows, None)

    act = quantization.QuantType.QInt8 if symmetric else quantization.QuantType.QUInt8
    quantization.quantize_static(str(src), str(dst), Reader(), quant_format=quantization.QuantFormat.QDQ,
                                 per_channel=per_channel, activation_type=act, weight_type=quantization.QuantType.QInt8,
                                 extra_options={"ActivationSymmetric": symmetric})
    return onnx.load(str(dst))


def pow2_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every scale rounded to a power of two and every zero point 0, biases at the product of
    their layer's input and weight scales: the power-of-two QDQ form (as hls4ml / FINN flows and aie4ml's
    examples use); onnxruntime runs it as is, so it is still the source."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}

    def set_init(name: str, value: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(numpy_helper.to_array(inits[name]).dtype), name))

    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            scale = numpy_helper.to_array(inits[node.input[1]])
            set_init(node.input[1], np.exp2(np.round(np.log2(scale))))
            if len(node.input) > 2 and node.input[2]:
                set_init(node.input[2], np.zeros_like(numpy_helper.to_array(inits[node.input[2]])))
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 2 and node.input[2] in dq:
            sx = numpy_helper.to_array(inits[dq[node.input[0]].input[1]])
            sw = numpy_helper.to_array(inits[dq[node.input[1]].input[1]])
            set_init(dq[node.input[2]].input[1], sx * sw)
    return model


def ort_codes(model: onnx.ModelProto, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """onnxruntime's values of the named QuantizeLinear outputs (declared extra graph outputs)."""
    m = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in m.graph.value_info}
    for name in names:
        m.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return {n: np.asarray(v).astype(np.int64) for n, v in zip(names, session.run(names, {"x": x}), strict=True)}


def im2col(graph, op, x: np.ndarray) -> np.ndarray:
    """[events, *spatial, C] codes -> [events * out pixels, taps * C] rows of the conv's sums (groups = 1)."""
    geo = conv_logical.geometry(graph, op)
    pad = [(0, 0)] + list(zip(geo.pads_begin, geo.pads_end, strict=True)) + [(0, 0)]
    xp = np.pad(x, pad, constant_values=conv_logical.pad_code(graph, op))
    cols = []
    for offset in np.ndindex(*geo.kernel):
        index = tuple(slice(o * d, o * d + (n - 1) * s + 1, s) for o, d, n, s in zip(
            offset, geo.dilations, geo.out_spatial, geo.strides, strict=True))
        cols.append(xp[(slice(None), *index, slice(None))])
    return np.concatenate(cols, axis=-1).reshape(-1, int(np.prod(geo.kernel)) * geo.channels)


def check_layers_against_onnxruntime(compiled, model, x: np.ndarray) -> int:
    """Each op fed onnxruntime's own input codes gives onnxruntime's output codes, except where a float-scale
    sum lies within float32 rounding of a rounding boundary (the rigorous bound of ``float32_tie_margin``, by
    one code); returns the number of such elements."""
    graph = compiled.model.graph
    nodes = list(model.graph.node)
    dq_of = {n.output[0]: n.input[0] for n in nodes if n.op_type == "DequantizeLinear"}
    users = {}
    for n in nodes:
        for i in n.input:
            users.setdefault(i, []).append(n)

    def codes_name(origin: str) -> str | None:
        """The QuantizeLinear output holding a logical tensor's codes: its own, the one quantizing a float value
        (a MaxPool result), or -- where a Relu after the Q -> DQ pair was folded into the op -- the one after it."""
        name = dq_of.get(origin, origin)
        if not any(n.op_type == "QuantizeLinear" and n.output[0] == name for n in nodes):
            q = [u for u in users.get(name, []) if u.op_type == "QuantizeLinear"]
            if not q:
                return None
            name = q[0].output[0]
        while True:
            dq = [u for u in users.get(name, []) if u.op_type == "DequantizeLinear"]
            relu = [u for d in dq for u in users.get(d.output[0], []) if u.op_type == "Relu"]
            q = [u for r in relu for u in users.get(r.output[0], []) if u.op_type == "QuantizeLinear"]
            if len(q) != 1:
                return name
            name = q[0].output[0]

    q_in = next(n for n in nodes if n.op_type == "QuantizeLinear" and n.input[0] == "x").output[0]
    names = {graph.inputs[0]: q_in}
    for op in graph.ops:
        names[op.outputs[0]] = codes_name(graph.tensor(op.outputs[0]).origin)
    source = ort_codes(model, x, [n for n in dict.fromkeys(names.values()) if n is not None])

    flat_from = {op.outputs[0]: graph.tensor(op.inputs[0]).shape for op in graph.ops
                 if op.kind == "reshape" and len(graph.tensor(op.inputs[0]).shape) > 1}

    def codes(tensor: str) -> np.ndarray:  # onnxruntime's codes of a logical tensor, in the logical layout
        v = source[names[tensor]]
        if v.ndim > 2 and tuple(v.shape[2:] + v.shape[1:2]) == tuple(graph.tensor(tensor).shape):
            v = np.moveaxis(v, 1, -1)  # NCHW -> NHWC
        elif tensor in flat_from:  # a Flatten of a channels-last tensor: NCHW element order -> NHWC
            shape = flat_from[tensor]
            flat = v.reshape(len(v), -1)
            v = np.empty_like(flat)
            v[:, nchw_flatten_order(tuple(shape[:-1]), shape[-1])] = flat
        return v.reshape(v.shape[0], *graph.tensor(tensor).shape)

    ties = 0
    for op in graph.ops:
        if op.kind not in ("conv", "dense", "pool", "reshape") or names[op.outputs[0]] is None or \
                names[op.inputs[0]] is None:
            continue
        x_codes = codes(op.inputs[0])
        want = codes(op.outputs[0])
        got = family_for(op.kind).evaluate(graph, op, [x_codes])[0]
        bad = np.argwhere(got != want)
        if not len(bad):
            continue
        assert op.kind in ("conv", "dense") and scaled_layer(graph, op) is not None, f"{op.name} differs"
        n = want.shape[-1]
        flat_got, flat_want = got.reshape(-1, n), want.reshape(-1, n)
        rows, cols = np.nonzero(flat_got != flat_want)
        rows_x = im2col(graph, op, x_codes) if op.kind == "conv" else x_codes.reshape(len(x_codes), -1)
        distance, bound = float32_tie_margin(graph, op, rows_x, rows, cols)
        assert np.all(distance <= bound), f"{op.name}: a difference the float32 bound does not explain"
        assert np.all(np.abs(flat_got[rows, cols] - flat_want[rows, cols]) == 1)
        ties += len(rows)
    return ties


def check_model(model, shape, batch: int, events: int = 500, overrides=None, exact: bool = True):
    compiled = compile_loaded(load_model(model), CompileOptions(batch=batch, overrides=overrides or {}))
    x = np.random.default_rng(7).random((events, *shape), dtype=np.float32)
    ours, ref = compiled.emulate(x), compiled.reference(x)
    differing = int((ours != ref).any(axis=1).sum())
    if exact:
        assert differing == 0, differing
    else:  # float scales: onnxruntime's float32 sums may round a tie the other way; each difference is proved one
        ties = check_layers_against_onnxruntime(compiled, model, x)
        assert differing <= ties and differing <= events // 100, (differing, ties)
    q = compiled.quantize(x)
    assert np.array_equal(compiled.emulate_codes(q), evaluate(compiled.model.graph, {
        compiled.model.graph.inputs[0]: q.reshape(len(q), *compiled.model.graph.tensor(
            compiled.model.graph.inputs[0]).shape)})[compiled.model.graph.outputs[0]].reshape(len(q), -1))
    report = compiled.native_cosim(x[:2 * batch])
    assert report.kernels and all(k.match for k in report.kernels), [k.kernel for k in report.kernels if not k.match]
    return compiled


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("symmetric", [False, True])
def test_cnn2d_pool_strides_dilation_groups(tmp_path, batch, symmetric):
    compiled = check_model(quantized(tmp_path, Cnn2d, (3, 12, 12), symmetric), (3, 12, 12), batch, exact=False)
    kinds = [layer.get("op") for layer in compiled.summary()["layers"]]
    assert kinds.count("conv") == 3 and "max_pool" in kinds


@pytest.mark.parametrize("batch", [1, 4])
def test_cnn1d_time_series(tmp_path, batch):
    model = pow2_qdq(quantized(tmp_path, Cnn1d, (4, 40), symmetric=False, seed=2, per_channel=False))
    check_model(model, (4, 40), batch)


def test_residual_block_and_global_pool_with_forced_splits(tmp_path):
    model = pow2_qdq(quantized(tmp_path, Residual, (2, 8, 8), symmetric=True, seed=3, per_channel=False))
    graph = load_model(model).graph
    convs = [op.name for op in graph.ops if op.kind == "conv"]
    check_model(model, (2, 8, 8), batch=4, overrides={convs[1]: {"bands": 2, "parts": 2}})


def test_padded_conv_of_a_zero_point_input_is_refused(tmp_path):
    """uint8 activations whose calibration range leaves zero point != 0 at a padded conv input."""
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            return self.c2(self.c1(x) - 0.5)

    with pytest.raises((UnsupportedQuantizationError, UnsupportedOpError), match="zero point|pads"):
        compile_loaded(load_model(quantized(tmp_path, Net, (1, 6, 6), symmetric=False)))


@pytest.mark.parametrize("batch", [1, 4])
def test_average_pooling_read_off_onnxruntime(tmp_path, batch):
    """AveragePool (2x2, and 3x3 stride 2 over padding counted in the divisor): the window sum on the tiles, the
    division and quantization as onnxruntime computes them, read off on every reachable sum."""
    model = pow2_qdq(quantized(tmp_path, AvgPooled, (3, 12, 12), symmetric=False, seed=6, per_channel=False))
    compiled = check_model(model, (3, 12, 12), batch)
    avg = [op for op in compiled.model.graph.ops if op.kind == "conv" and "requant_table" in op.attrs]
    assert len(avg) == 2 and all(op.attrs["groups"] == 16 for op in avg)


class Padded(torch.nn.Module):
    """Explicit zero Pads (ONNX Pad nodes) before a conv, a max pool and an average pool."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3)
        self.c2 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16 * 3 * 3, 4)

    def forward(self, x):
        pad = torch.nn.functional.pad
        x = torch.relu(self.c1(pad(x, (1, 2, 0, 1))))  # asymmetric: left 1, right 2, top 0, bottom 1
        x = torch.nn.functional.max_pool2d(pad(x, (1, 1, 1, 1)), 2)
        x = torch.relu(self.c2(x))
        x = torch.nn.functional.avg_pool2d(pad(x, (0, 1, 0, 1)), 3, stride=2)  # the Pad's zeros are counted
        return self.fc(torch.flatten(x, 1))


@pytest.mark.parametrize("batch", [1, 4])
def test_explicit_pad_nodes_fold_into_the_next_window(tmp_path, batch):
    """ONNX Pad (constant zeros on the spatial axes) runs as no op of its own: its zeros join the padding of the
    Conv / MaxPool / AveragePool reading it (the memory tile's zero padding on chip); onnxruntime's codes."""
    model = pow2_qdq(quantized(tmp_path, Padded, (3, 11, 11), symmetric=False, seed=8, per_channel=False))
    assert sum(n.op_type == "Pad" for n in model.graph.node) == 3
    compiled = check_model(model, (3, 11, 11), batch)
    ops = compiled.model.graph.ops
    assert not any(op.kind == "pad" for op in ops)
    first = next(op for op in ops if op.kind == "conv")
    assert (first.attrs["pads_begin"], first.attrs["pads_end"]) == ([0, 1], [1, 2])


def test_pad_nodes_that_cannot_fold_are_refused(tmp_path):
    """A reflecting Pad, and a Pad read by a Relu rather than a window op: typed errors naming the node."""
    import onnx.helper as oh

    model = pow2_qdq(quantized(tmp_path, Padded, (3, 11, 11), symmetric=False, seed=8, per_channel=False))
    reflect = onnx.ModelProto.FromString(model.SerializeToString())
    pad = next(n for n in reflect.graph.node if n.op_type == "Pad")
    kept = [a for a in pad.attribute if a.name != "mode"]
    del pad.attribute[:]
    pad.attribute.extend(kept + [oh.make_attribute("mode", "reflect")])
    with pytest.raises(UnsupportedOpError, match="mode 'reflect'"):
        load_model(reflect)
    relu = onnx.ModelProto.FromString(model.SerializeToString())
    nodes = list(relu.graph.node)
    pad = next(n for n in nodes if n.op_type == "Pad")
    user = next(n for n in nodes if pad.output[0] in n.input)
    mid = oh.make_node("Relu", [pad.output[0]], ["pad_relu"], name="relu_after_pad")
    user.input[list(user.input).index(pad.output[0])] = "pad_relu"
    relu.graph.node.insert(nodes.index(pad) + 1, mid)
    with pytest.raises(UnsupportedOpError, match="relu_after_pad.*output of a Pad"):
        load_model(relu)

"""The ``nn2aie`` hls4ml backend (imported by hls4ml's plugin loader only; it imports hls4ml).

* conversion: hls4ml's generic flows (``optimize``: parsing clean-ups and precision inference, the same ones the
  Vivado/Vitis backends run first), then one nn2aie pass, ``exact_input_type`` (see ``ExactInputType``: an Input
  layer whose precision nobody configured gets a type that makes the input quantizer bit-exact);
  ``frontends.hls4ml_frontend`` then reads the resulting layers into nn2aie's logical IR;
* ``write()``: the nn2aie Vitis/ADF project in the model's output directory;
* ``compile()``: runs nn2aie's compiler passes (no C++ build); ``predict(x)``: the placed design's bit-exact
  emulator, with inputs cast into the Input layer's type as hls4ml's C++ does;
* ``build()``: ``make`` in the project when Vitis (``v++``) is on PATH.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import warnings

import numpy as np
from hls4ml.backends.fpga.fpga_backend import FPGABackend
from hls4ml.model.flow import register_flow
from hls4ml.model.optimizer import OptimizerPass
from hls4ml.model.types import FixedPrecisionType
from hls4ml.writer.writers import Writer

from nn2aie.api import PROJECT_MARKER, Compiled, compile_loaded, default_inputs, write_project_atomic
from nn2aie.errors import (
    IllegalConfigError,
    MissingToolError,
    Nn2aieError,
    PrecisionWarning,
    UnsupportedOpError,
    UnsupportedQuantizationError,
)
from nn2aie.frontends.hls4ml_frontend import (
    FLOAT32_GUARD_BITS,
    MAX_EXACT_INPUT_WIDTH,
    exact_input_type,
    fixed_type,
    graph_from_hls4ml,
    input_cast_is_exact,
)
from nn2aie.frontends.loader import LoadedModel
from nn2aie.ir.evaluate import cast_input, evaluate, input_pre_cast
from nn2aie.passes.pipeline import CompileOptions

_ATTR = "_nn2aie_compiled"  # where the compiled design is kept on the hls4ml ModelGraph
_CHECKED = "nn2aie_input_type_checked"  # layer attribute: ExactInputType has looked at this Input layer


class ExactInputType(OptimizerPass):
    """hls4ml's QONNX converter writes the model's input quantizer as a linear Activation after the Input layer,
    and its C++ casts a float input into the Input type first: with hls4ml's defaults (the model's default
    precision, e.g. fixed<16,6> or fixed<32,16>, AP_TRN / AP_WRAP) that first cast truncates inputs onto the
    quantizer's rounding ties and wraps large ones, so the result differs from the quantizer (QONNX / Brevitas).

    This pass (the nn2aie backend's own flow, after hls4ml's ``optimize``) looks at such an Input layer:
    - its precision not configured (no LayerName / LayerType precision, or 'auto'): the Input gets
      ``exact_input_type(quantizer type)``, which makes the double cast equal the quantizer on every float32 input
      (refused with a typed error when that type would be wider than the host cast handles);
    - configured explicitly: kept (nn2aie then equals hls4ml's C simulation), with a ``PrecisionWarning`` naming
      the layer and the exact type when the configured one may differ from the quantizer.
    Input types hls4ml's bit-exact pass derived (HGQ proxy models) are left alone.
    """

    def match(self, node) -> bool:
        return node.class_name == "Input" and not node.get_attr(_CHECKED, False)

    def transform(self, model, node) -> bool:
        node.set_attr(_CHECKED, True)
        choose_input_type(model, node)
        return False  # the graph's structure is unchanged


class Nn2aieWriter(Writer):
    def write_hls(self, model):
        write_project(model)


class Nn2aieBackend(FPGABackend):
    def __init__(self):
        super().__init__(name="nn2aie")
        self.register_pass("exact_input_type", ExactInputType)
        self._default_flow = register_flow("ip", [f"{self.name}:exact_input_type"], requires=["optimize"],
                                           backend=self.name)

    def get_default_flow(self):
        return self._default_flow

    def get_writer_flow(self):
        return None

    def create_initial_config(self, device="xcve2802", batch=4, plio_bits=128, pl_freq_mhz=None,
                              max_weight_bytes=None, io_type="io_parallel", **_):
        """Initial configuration of the nn2aie backend (hls4ml's ``create_config`` passes the converter's extra
        keyword arguments here).

        Args:
            device: AIE-ML part (``nn2aie devices``), e.g. 'xcve2802' (VEK280) or 'xcve2302'.
            batch: events per graph iteration (any positive number; 1 for the lowest latency).
            plio_bits: PLIO width, 32, 64 or 128.
            pl_freq_mhz: PL clock of the PLIOs (None: the part's catalogued default).
            max_weight_bytes: weight bytes per tile (None: one data-memory bank).
            io_type: only 'io_parallel' (the layout nn2aie reads).

        Per-layer parallelism: ``hls_config['LayerName'][dense_name]['Parallelism'] = {'cas_length': L,
        'cas_num': C}``.
        """
        if io_type != "io_parallel":
            raise IllegalConfigError("hls4ml option io_type", f"{io_type!r} is not supported by the nn2aie backend",
                                     "use io_type='io_parallel' (nn2aie plans its own data movement)")
        return {
            "Device": device,
            "Batch": batch,
            "PlioBits": plio_bits,
            "PLFrequencyMHz": pl_freq_mhz,
            "MaxWeightBytes": max_weight_bytes,
            "IOType": io_type,
            "HLSConfig": {},
            "WriterConfig": {},
        }

    def write(self, model):
        self.writer.write_hls(model)

    def compile(self, model):
        """Compile the design for the emulator. ``ModelGraph.compile`` has just called ``write``, which converted
        and compiled the current model; it then loads the library named here: None is the running process itself
        (POSIX dlopen(NULL)), so nothing is built or loaded."""
        compiled_model(model)
        return None

    def predict(self, model, x, *args, **kwargs):
        """Bit-exact outputs of the placed design (compiles on first use if ``compile()`` was not called)."""
        return predict(model, x)

    def build(self, model, target="hw", **kwargs):
        """Run ``make <target>`` (hw, x86sim, aiesim, ...) in the written project; needs Vitis' ``v++``."""
        if shutil.which("v++") is None:
            raise MissingToolError(
                "hls4ml backend nn2aie build()", "AMD Vitis is not installed (no v++ on PATH)",
                "source Vitis' settings64.sh to build the AIE project; model.predict() already gives the "
                "bit-exact results of the placed design without Vitis")
        out = pathlib.Path(model.config.get_output_dir())
        if not (out / PROJECT_MARKER).is_file():
            write_project(model)
        proc = subprocess.run(["make", target], cwd=out, check=False)
        if proc.returncode:
            raise MissingToolError(f"project {out}", f"`make {target}` failed with exit code {proc.returncode}",
                                   "see the Vitis output above")
        return {"target": target, "output_dir": str(out)}


# -- helpers --------------------------------------------------------------------------------------------------
def configured_precision(config, layer) -> str | None:
    """The precision the user's hls_config gives ``layer``'s result (LayerName, then LayerType, hls4ml's own lookup
    order), or None when it gives none or 'auto' (the model default or hls4ml's inference then decide)."""
    name, cls = layer.name.lower(), layer.class_name.lower()
    by_name, by_type = config.layer_name_precision, config.layer_type_precision
    for table, key in ((by_name, f"{name}_result"), (by_name, f"{name}_default"), (by_type, f"{cls}_result"),
                       (by_type, f"{cls}_default")):
        value = table.get(key)
        if value is not None:
            return None if str(value).strip().lower() == "auto" else str(value)
    return None


def _precision_text(t) -> str:
    return f"{'' if t.signed else 'u'}fixed<{t.width},{t.width - t.frac},{t.rounding},{t.overflow}>"


def choose_input_type(model, node) -> None:
    """``ExactInputType`` on one Input layer (see there)."""
    out = node.outputs[0]
    users = [layer for layer in model.get_layers() if out in (layer.inputs or [])]
    if len(users) != 1 or node.name in model.outputs or out in model.outputs:
        return  # not a lone input quantizer: the frontend decides (it reads the same pattern)
    quant = users[0]
    if quant.class_name != "Activation" or str(quant.get_attr("activation", "")).lower() != "linear":
        return
    if node.get_attr("trusted", False) or node.get_attr("bit_exact_transformed", False):
        return  # hls4ml's bit-exact machinery (HGQ proxy models) derived this Input type on purpose
    try:
        q = fixed_type(quant.get_output_variable().type.precision, f"hls4ml layer {quant.name} result")
        pre = fixed_type(node.get_output_variable().type.precision, f"hls4ml layer {node.name} result")
    except Nn2aieError:
        return  # not an ap_fixed pair: graph_from_hls4ml refuses it with its own error
    exact = exact_input_type(q)
    explicit = configured_precision(model.config, node)
    if explicit is not None:
        if not input_cast_is_exact(pre, q):
            use = (f"leave its precision 'auto' (or set hls_config['LayerName']['{node.name}']['Precision']"
                   f"['result'] = '{_precision_text(exact)}')" if exact is not None else "")
            warnings.warn(PrecisionWarning(
                f"hls4ml layer {node.name} (Input): the configured precision {explicit} casts float inputs before "
                f"the input quantizer {quant.name} ({_precision_text(q)}) and may move some of them onto another "
                f"code (rounding ties, overflow); nn2aie follows the configuration (equal to hls4ml's C "
                f"simulation), not the quantizer" + (f". For the quantizer's exact result {use}" if use else "")),
                stacklevel=2)
        return
    if exact is None:
        if q.overflow == "SAT_ZERO":
            return  # graph_from_hls4ml refuses AP_SAT_ZERO itself, naming the layer
        where = f"hls4ml layer {quant.name} (input quantizer of {node.name})"
        keep = (f"or set hls_config['LayerName']['{node.name}']['Precision']['result'] to the Input type to use "
                "(nn2aie then follows hls4ml's double cast, with a PrecisionWarning)")
        width = q.width + FLOAT32_GUARD_BITS + 1  # exact_input_type's width
        if width > MAX_EXACT_INPUT_WIDTH:
            raise UnsupportedQuantizationError(
                where, f"{_precision_text(q)} is {q.width} bits wide: an Input type that keeps it bit-exact needs "
                f"{width} bits, more than nn2aie's {MAX_EXACT_INPUT_WIDTH}-bit host cast",
                f"quantize the model input with at most {MAX_EXACT_INPUT_WIDTH - width + q.width} bits, {keep}")
        raise UnsupportedQuantizationError(
            where, f"{_precision_text(q)} wraps and rounds by the sign of the value ({q.rounding}): any Input type "
            "before it saturates or wraps large inputs first, and a wrap can flip that sign, so no Input type makes "
            "hls4ml's double cast equal the quantizer",
            f"quantize the model input with AP_SAT or with RND_CONV / RND / TRN rounding, {keep}")
    node.get_output_variable().type.precision = FixedPrecisionType(
        exact.width, exact.width - exact.frac, True, exact.rounding, exact.overflow)


def compile_options(model) -> CompileOptions:
    cfg = model.config
    overrides = {}
    for name, layer_cfg in (cfg.config.get("HLSConfig", {}).get("LayerName") or {}).items():
        par = layer_cfg.get("Parallelism") if isinstance(layer_cfg, dict) else None
        if par is not None:
            if not isinstance(par, dict) or set(par) - {"cas_length", "cas_num"}:
                raise IllegalConfigError(f"hls4ml config LayerName.{name}.Parallelism", f"{par!r} is not a dict of "
                                         "cas_length / cas_num", "give {'cas_length': L, 'cas_num': C}")
            overrides[name] = {k: int(v) for k, v in par.items()}
    kwargs = {"device": cfg.get_config_value("Device", "xcve2802"), "batch": int(cfg.get_config_value("Batch", 4)),
              "plio_bits": int(cfg.get_config_value("PlioBits", 128)), "overrides": overrides}
    if cfg.get_config_value("PLFrequencyMHz") is not None:
        kwargs["pl_freq_mhz"] = float(cfg.get_config_value("PLFrequencyMHz"))
    if cfg.get_config_value("MaxWeightBytes") is not None:
        kwargs["max_weight_bytes"] = int(cfg.get_config_value("MaxWeightBytes"))
    return CompileOptions(**kwargs)


def compiled_model(model, refresh: bool = False) -> Compiled:
    """Convert the hls4ml model to nn2aie's IR and run the compiler passes (cached on the model)."""
    cached = getattr(model, _ATTR, None)
    if cached is not None and not refresh:
        return cached
    graph = graph_from_hls4ml(model)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UnsupportedOpError(f"hls4ml model {graph.name}", f"has {len(graph.inputs)} inputs and "
                                 f"{len(graph.outputs)} outputs: the nn2aie hls4ml backend's predict and project "
                                 "take one of each for now",
                                 "export the model to ONNX (QDQ or QONNX) and compile it with nn2aie, which takes "
                                 "several inputs and outputs")

    def reference(x: np.ndarray) -> np.ndarray:  # the logical integer model (link 2 of the chain)
        x_t = graph.tensor(graph.inputs[0])
        codes = cast_input(x, x_t.type, input_pre_cast(graph), "inputs").reshape((-1,) + tuple(x_t.shape))
        y = evaluate(graph, {graph.inputs[0]: codes})[graph.outputs[0]]
        return y.reshape(len(codes), -1) * graph.tensor(graph.outputs[0]).type.lsb

    loaded = LoadedModel(graph, "hls4ml", None, reference)  # type: ignore[arg-type]  # no ONNX model
    compiled = compile_loaded(loaded, compile_options(model))
    setattr(model, _ATTR, compiled)
    return compiled


def input_codes(compiled: Compiled, x) -> np.ndarray:
    """Float inputs -> input codes as hls4ml's C++ casts them (the Input type's own rounding and overflow)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number):
        raise IllegalConfigError("inputs", f"have dtype {x.dtype}", "pass a float array")
    k = compiled.input_width
    x = x.reshape(-1, k) if x.size % k == 0 else x
    if x.ndim != 2 or x.shape[1] != k:
        raise IllegalConfigError("inputs", f"expected [samples, {k}], got {list(np.shape(x))}",
                                 f"pass {k} features per sample")
    return cast_input(x.astype(np.float64), compiled.input_type, compiled.input_pre_type, "inputs")


def predict(model, x) -> np.ndarray:
    """Dequantized float64 outputs of the placed design's bit-exact emulator (hls4ml's predict shape rules)."""
    compiled = compiled_model(model)
    codes = input_codes(compiled, x)
    y = compiled.emulate_codes(codes).astype(np.float64) * compiled.output_type.lsb
    return y[0] if y.shape[0] == 1 else y


def write_project(model) -> dict:
    """Write the nn2aie project into the model's output directory (atomically, through nn2aie.api)."""
    compiled = compiled_model(model, refresh=True)
    out = pathlib.Path(model.config.get_output_dir()).resolve()
    codes = input_codes(compiled, default_inputs(compiled))
    return write_project_atomic(compiled, out, codes=codes,
                                marker_extra={"project_name": model.config.get_project_name()})

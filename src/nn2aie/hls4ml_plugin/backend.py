"""The ``nn2aie`` hls4ml backend (imported by hls4ml's plugin loader only; it imports hls4ml).

* conversion: hls4ml's generic flows (``optimize``: parsing clean-ups and precision inference, the same ones the
  Vivado/Vitis backends run first) and nothing backend-specific; ``frontends.hls4ml_frontend`` then reads the
  resulting layers into nn2aie's logical IR;
* ``write()``: the nn2aie Vitis/ADF project in the model's output directory;
* ``compile()``: runs nn2aie's compiler passes (no C++ build); ``predict(x)``: the placed design's bit-exact
  emulator, with inputs cast into the Input layer's type as hls4ml's C++ does;
* ``build()``: ``make`` in the project when Vitis (``v++``) is on PATH.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import numpy as np
from hls4ml.backends.fpga.fpga_backend import FPGABackend
from hls4ml.model.flow import register_flow
from hls4ml.writer.writers import Writer

from nn2aie.api import PROJECT_MARKER, Compiled, compile_loaded, default_inputs, write_project_atomic
from nn2aie.errors import IllegalConfigError, MissingToolError, UnsupportedOpError
from nn2aie.frontends.hls4ml_frontend import graph_from_hls4ml
from nn2aie.frontends.loader import LoadedModel
from nn2aie.ir.evaluate import cast_input, evaluate, input_pre_cast
from nn2aie.passes.pipeline import CompileOptions

_ATTR = "_nn2aie_compiled"  # where the compiled design is kept on the hls4ml ModelGraph


class Nn2aieWriter(Writer):
    def write_hls(self, model):
        write_project(model)


class Nn2aieBackend(FPGABackend):
    def __init__(self):
        super().__init__(name="nn2aie")
        self._default_flow = register_flow("ip", [], requires=["optimize"], backend=self.name)

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
            batch: rows per graph iteration, a multiple of 4.
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

"""Native co-simulation: the generated kernel C++ compiled with a host compiler against nn2aie's AIE-API
emulation headers (``include/``) and compared bit for bit with the emulator (``harness.run_native_cosim``)."""

from nn2aie.sim.native.harness import (
    INCLUDE_DIR,
    KernelResult,
    NativeReport,
    compile_kernels,
    default_cache_dir,
    find_compiler,
    run_native_cosim,
)

__all__ = ["INCLUDE_DIR", "KernelResult", "NativeReport", "compile_kernels", "default_cache_dir", "find_compiler",
           "run_native_cosim"]

"""hls4ml backend plugin: ``backend='nn2aie'`` in hls4ml 1.3.0 compiles the converted model for AIE-ML.

hls4ml discovers it through the ``hls4ml.backends`` entry point group (declared in nn2aie's pyproject.toml), or
through ``HLS4ML_BACKEND_PLUGINS=nn2aie.hls4ml_plugin``; either way it calls ``register`` with its
``register_backend`` and ``register_writer`` functions. Importing this package does not import hls4ml: the backend
module is imported only when hls4ml calls ``register`` (while ``import hls4ml`` loads its plugins).
"""

from __future__ import annotations

BACKEND_NAME = "nn2aie"


def register(register_backend=None, register_writer=None) -> None:
    """Register the nn2aie writer and backend with hls4ml (idempotent)."""
    from hls4ml.backends.backend import backend_map
    from hls4ml.writer.writers import writer_map

    from nn2aie.hls4ml_plugin.backend import Nn2aieBackend, Nn2aieWriter

    if register_writer is None or register_backend is None:
        from hls4ml.backends.backend import register_backend as _rb
        from hls4ml.writer.writers import register_writer as _rw

        register_backend, register_writer = register_backend or _rb, register_writer or _rw
    if BACKEND_NAME not in writer_map:
        register_writer(BACKEND_NAME, Nn2aieWriter)
    if BACKEND_NAME.lower() not in backend_map:
        register_backend(BACKEND_NAME, Nn2aieBackend)

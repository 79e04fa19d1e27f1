"""Make tests/helpers.py importable from every test folder; Keras 3 (used through hls4ml) runs on the torch
backend, so no test needs TensorFlow or JAX."""

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
os.environ.setdefault("KERAS_BACKEND", "torch")

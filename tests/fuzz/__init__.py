"""Fuzzing of the model frontends and the compile pipeline (see docs/testing.md).

``seeds`` builds valid models in-process, ``mutators`` derives seeded broken (or harmlessly rewritten) model files
from them, ``harness`` runs every case in a separate worker process with a time limit and classifies the outcome,
``run`` is the documented large run (``python -m tests.fuzz.run --cases 600 --seed 0``).
"""

"""Property tests of the conv family over random shapes, strides, paddings, dilations, groups, types and splits
(tests/kernels/conv/properties.py): the default run checks a few hundred cases; the slow run is the documented
run of >= 5000 (docs/testing.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from properties import run  # noqa: E402


def test_random_convolutions_and_pools():
    result = run(cases=150, seed=1, native_every=50)
    assert result["mismatches"] == [], result
    assert result["native"] >= 3


@pytest.mark.slow
def test_random_convolutions_and_pools_documented_run():
    result = run(cases=5000, seed=2026, native_every=250)
    print(result)
    assert result["mismatches"] == [], result

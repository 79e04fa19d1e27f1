"""Today's dense projects stay byte-identical through refactoring (tests/golden/cases.py says what is covered)."""

from __future__ import annotations

import json
import pathlib

import pytest

from golden.cases import CASES, snapshot_of

SNAPSHOT = json.loads(pathlib.Path(__file__).with_name("snapshot.json").read_text())


def test_snapshot_covers_every_case():
    assert sorted(SNAPSHOT) == sorted(c.name for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_project_unchanged(case):
    got, want = snapshot_of(case), SNAPSHOT[case.name]
    changed = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    assert not changed, (f"{case.name}: {len(changed)} emitted file(s) changed: {changed[:8]}; if on purpose, run "
                         "`python -m tests.golden.make` in a commit of its own that says why")

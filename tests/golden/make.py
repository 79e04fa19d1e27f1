"""Rewrite tests/golden/snapshot.json (only in a commit that changes emitted projects on purpose)."""

from __future__ import annotations

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from golden.cases import CASES, snapshot_of  # noqa: E402

SNAPSHOT = pathlib.Path(__file__).with_name("snapshot.json")


def main() -> None:
    data = {case.name: snapshot_of(case) for case in CASES}
    SNAPSHOT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT} ({len(data)} cases, {sum(len(v) for v in data.values())} digests)")


if __name__ == "__main__":
    main()

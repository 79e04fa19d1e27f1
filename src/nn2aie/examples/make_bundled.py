"""Regenerate the bundled example models shipped with nn2aie (deterministic, seeded).

    python -m nn2aie.examples.make_bundled
"""

from __future__ import annotations

import pathlib

from nn2aie.examples.builders import make_qdq_mlp

HERE = pathlib.Path(__file__).parent

BUNDLED = {
    # jet tagger topology 16 -> 64 -> 32 -> 32 -> 5 (ReLU hidden, linear output), int8 QDQ, power-of-two scales
    "jet_tagger_qdq.onnx": lambda: make_qdq_mlp([16, 64, 32, 32, 5], seed=2026, name="jet_tagger"),
}


def main() -> None:
    for name, build in BUNDLED.items():
        (HERE / name).write_bytes(build().SerializeToString(deterministic=True))
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()

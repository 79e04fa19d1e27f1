"""Device catalog: parts and generation facts as data, one ``Device`` object to ask them.

Device facts live only here (in ``catalog/*.json``); code asks the Device instead of hard-coding numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from nn2aie.errors import IllegalConfigError

DEFAULT_DEVICE = "xcve2802"


@cache
def _load(name: str) -> dict:
    text = resources.files("nn2aie.devices").joinpath("catalog", name).read_text(encoding="utf-8")
    return json.loads(text)


def _generation_facts(generation: str) -> dict:
    return _load(f"{generation}.json")["facts"]


def part_names() -> list[str]:
    return sorted(_load("parts.json")["parts"])


@dataclass(frozen=True)
class Device:
    """One part: geometry from ``parts.json`` plus its generation's facts."""

    name: str
    generation: str
    board: str
    columns: int
    compute_rows: int
    memtile_rows: int
    aie_clock_mhz: float
    plio_bits_default: int
    pl_clock_mhz_default: float
    supported: bool
    unsupported_reason: str = ""
    vitis_part: str = ""  # the full part name v++ --part takes
    shim_pl_columns: tuple[int, ...] | None = None  # interface columns with a PL interface (None: every column)

    def pl_columns(self) -> list[int]:
        """Interface columns where a PLIO can be placed."""
        return list(self.shim_pl_columns) if self.shim_pl_columns is not None else list(range(self.columns))
    sources: dict[str, str] = field(default_factory=dict)

    # -- generation facts -------------------------------------------------
    def fact(self, key: str) -> Any:
        facts = _generation_facts(self.generation)
        if key not in facts:
            raise IllegalConfigError(
                f"device {self.name}", f"the {self.generation} catalog has no fact '{key}'",
                "this generation is catalogued for reference only")
        return facts[key]["value"]

    def fact_source(self, key: str) -> str:
        return _generation_facts(self.generation)[key]["source"]

    @property
    def tiles(self) -> int:
        return self.columns * self.compute_rows

    @property
    def data_memory_bytes(self) -> int:
        return int(self.fact("data_memory_bytes"))

    @property
    def bank_bytes(self) -> int:
        return self.data_memory_bytes // int(self.fact("data_memory_banks"))

    @property
    def memtile_bytes(self) -> int:
        return int(self.fact("memtile_bytes"))

    def plio_bytes_per_cycle(self, bits: int, pl_freq_mhz: float, aie_clock_mhz: float | None = None) -> float:
        """Bytes a PLIO delivers per AIE cycle: its width at the PL clock, at most one AIE stream (stream_bits)
        per cycle. Shared by the memory plan (how many PLIOs a layer needs) and the performance model."""
        rate = bits / 8 * pl_freq_mhz / (aie_clock_mhz or self.aie_clock_mhz)
        return min(float(self.fact("stream_bits")) / 8, rate)

    def macs_per_cycle(self, a_type: str, b_type: str) -> int:
        return int(self.fact("macs_per_cycle")[f"{a_type}x{b_type}"])

    def mmul_shapes(self, a_type: str, b_type: str) -> dict:
        shapes = self.fact("mmul_shapes")
        key = f"{a_type}x{b_type}"
        if key not in shapes:
            raise IllegalConfigError(
                f"device {self.name}", f"no aie::mmul shape for {a_type} x {b_type} on {self.generation}",
                "use int8 or int16 activations with int8 weights, or int16 x int16")
        return shapes[key]

    def summary(self) -> dict:
        return {
            "name": self.name, "generation": self.generation, "board": self.board,
            "columns": self.columns, "compute_rows": self.compute_rows, "tiles": self.tiles,
            "memtile_rows": self.memtile_rows, "memtiles": self.columns * self.memtile_rows,
            "aie_clock_mhz": self.aie_clock_mhz, "supported": self.supported,
        }


def get_device(name: str = DEFAULT_DEVICE) -> Device:
    parts = _load("parts.json")["parts"]
    key = name.lower()
    if key not in parts:
        raise IllegalConfigError(
            f"device '{name}'", "not in the catalog",
            f"choose one of: {', '.join(part_names())} (see `nn2aie devices`)")
    p = parts[key]
    dev = Device(
        name=key, generation=p["generation"], board=p.get("board", ""), columns=p["columns"],
        compute_rows=p["compute_rows"], memtile_rows=p["memtile_rows"], aie_clock_mhz=p["aie_clock_mhz"],
        plio_bits_default=p.get("plio_bits_default", 128), pl_clock_mhz_default=p.get("pl_clock_mhz_default", 312.5),
        supported=p.get("supported", False), unsupported_reason=p.get("unsupported_reason", ""),
        sources=p.get("sources", {}), vitis_part=p.get("vitis_part", ""),
        shim_pl_columns=None if p.get("shim_pl_columns", "all") == "all" else tuple(p["shim_pl_columns"]),
    )
    return dev


def get_target_device(name: str = DEFAULT_DEVICE) -> Device:
    """A device nn2aie can compile for (refuses catalogued-only parts)."""
    dev = get_device(name)
    if not dev.supported:
        raise IllegalConfigError(
            f"device '{name}'", f"catalogued but not a compile target: {dev.unsupported_reason}",
            "compile for xcve2802 or xcve2302")
    return dev

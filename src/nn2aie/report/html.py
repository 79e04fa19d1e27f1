"""Self-contained HTML report of a compiled project (``nn2aie report DIR``).

Everything shown is read from the project's ``summary.json`` and ``report/placement.png``; nothing is recomputed,
so the page can never disagree with the plan it describes. The page needs no network and no JavaScript: inline
CSS, the placement picture as a ``data:`` URI. Every string goes through jinja2's autoescape (layer and file names
come from the user's model). The output depends only on the project's files, so the same project gives
byte-identical HTML.
"""

from __future__ import annotations

import base64
import json
import pathlib
from typing import Any

import jinja2

from nn2aie import __version__
from nn2aie.errors import BadFileError, Nn2aieError

REPORT_NAME = "report.html"

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("nn2aie.report", "templates"),
    autoescape=True,  # model-derived names may hold markup
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)

# summary.json keys the report reads, with their JSON types
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "generator": str, "model": dict, "device": str, "batch": int, "tiles_used": int, "memory_tiles_used": int,
    "plios": list, "layers": list, "performance": dict,
}
_LAYER_REQUIRED = ("name", "input_type", "output_type", "cas_length", "cas_num", "tiles")  # every family's
_HINT = "pass a project directory written by `nn2aie compile` or `nn2aie demo` (recompile it if in doubt)"


def load_summary(project_dir: str | pathlib.Path) -> dict:
    """The project's summary.json, checked to be one this nn2aie wrote (BadFileError naming the directory)."""
    d = pathlib.Path(project_dir)
    where = f"project {d}"
    if not d.is_dir():
        raise BadFileError(where, "does not exist" if not d.exists() else "is not a directory", _HINT)
    path = d / "summary.json"
    if not path.is_file():
        raise BadFileError(where, "is not an nn2aie project (no summary.json)", _HINT)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadFileError(where, f"summary.json is unreadable ({exc})", _HINT) from None
    if not isinstance(summary, dict) or not isinstance(summary.get("generator"), str) \
            or not summary["generator"].startswith("nn2aie "):
        raise BadFileError(where, "summary.json was not written by nn2aie (no 'generator: nn2aie <version>')", _HINT)
    version = summary["generator"].removeprefix("nn2aie ")
    if version != __version__:
        raise BadFileError(where, f"summary.json was written by nn2aie {version}, this is nn2aie {__version__}",
                           "recompile the project with this version of nn2aie")
    bad = [k for k, t in _REQUIRED.items() if not isinstance(summary.get(k), t)]
    if not bad:
        bad = [f"layers[{i}]" for i, layer in enumerate(summary["layers"])
               if not isinstance(layer, dict) or any(k not in layer for k in _LAYER_REQUIRED)]
    if bad:
        raise BadFileError(where, f"summary.json lacks or mistypes {', '.join(bad)}", _HINT)
    return summary


def _num(value: Any) -> str:
    """Numbers exactly as summary.json holds them (already rounded there), with thousands separators."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return f"{value:,.0f}"
    return f"{value:,}"


def _pct(fraction: Any) -> str:
    return f"{100 * fraction:.1f} %" if isinstance(fraction, (int, float)) else "–"


def _assumption(value: Any) -> str:
    if isinstance(value, list):
        return " / ".join(_num(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_assumption(v)}" for k, v in value.items())
    return _num(value)


def _tile_span(tiles_at: Any) -> str:
    """Where a layer's tiles are, as its column/row ranges (a 296-tile layer does not list every tile)."""
    if not isinstance(tiles_at, list) or not tiles_at:
        return "–"
    try:
        cols = sorted({int(t[0]) for t in tiles_at})
        rows = sorted({int(t[1]) for t in tiles_at})
    except (TypeError, ValueError, IndexError):
        return "–"

    def span(v: list[int]) -> str:
        return str(v[0]) if v[0] == v[-1] else f"{v[0]}–{v[-1]}"

    return f"col {span(cols)}, row {span(rows)}"


def _picture(project_dir: pathlib.Path) -> tuple[str, str] | None:
    """(data URI, file) of the placement picture: the PNG, else the SVG (as an <img>, so no script in it runs)."""
    for name, mime in (("placement.png", "image/png"), ("placement.svg", "image/svg+xml")):
        path = project_dir / "report" / name
        if path.is_file():
            return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}", f"report/{name}"
    return None


def _device(name: str) -> dict | None:
    from nn2aie.devices import get_device

    try:
        return get_device(name).summary()
    except Nn2aieError:  # a device this catalog does not know: the report still shows the project
        return None


def _context(project_dir: pathlib.Path, summary: dict) -> dict:
    perf = summary["performance"]
    modelled = perf.get("layers") if isinstance(perf.get("layers"), dict) else {}
    layers = []
    for layer in summary["layers"]:
        layers.append({
            # generic fields, then the family's own (dense: k, n, weights, mmul, accumulator); "–" where absent
            "name": layer["name"], "k": layer.get("k", "–"), "n": layer.get("n", "–"),
            "activation": layer.get("activation", "–"), "input_type": layer["input_type"],
            "weight_type": layer.get("weight_type", "–"), "output_type": layer["output_type"],
            "mmul": layer.get("mmul", "–"), "acc": layer.get("acc", "–"),
            "cas_length": layer["cas_length"], "cas_num": layer["cas_num"], "tiles": layer["tiles"],
            "where": _tile_span(layer.get("tiles_at")),
            # per-layer model results (perf/model.py) are shown only when summary.json carries them
            "cycles": _num(modelled[layer["name"]]["kernel_cycles_max"]) if layer["name"] in modelled else None,
            "utilisation": _pct(modelled[layer["name"]]["utilisation_max"]) if layer["name"] in modelled else None,
            "mac_use": _pct(modelled[layer["name"]]["mac_use"])
            if layer["name"] in modelled and modelled[layer["name"]].get("mac_use") is not None else None,
        })
    resources = summary.get("resources") or {}
    rows = []
    for rule, r in resources.items():
        if isinstance(r, dict) and isinstance(r.get("used"), (int, float)) and r.get("capacity"):
            rows.append({"rule": rule, "used": _num(r["used"]), "capacity": _num(r["capacity"]),
                         "fraction": r["used"] / r["capacity"], "where": r.get("where", "")})
    rows.sort(key=lambda r: (-r["fraction"], r["rule"]))
    for r in rows:
        r["fraction"] = _pct(r["fraction"])
    assumptions = perf.get("assumptions") or {}
    util = perf.get("tile_utilisation") or {}
    checked = summary.get("bit_exact_check") or None
    return {
        "s": summary,
        "model": summary["model"],
        "device": _device(summary["device"]),
        "layers": layers,
        "has_cycles": any(x["cycles"] is not None for x in layers),
        "has_utilisation": any(x["utilisation"] is not None for x in layers),
        "picture": _picture(project_dir),
        "placement": summary.get("placement") or {},
        "resources": rows,
        "perf_rows": [
            ("interval", f"{_num(perf.get('interval_cycles'))} AIE cycles per graph iteration "
                         f"({_num(assumptions.get('batch', summary['batch']))} events)"),
            ("throughput", f"{_num(perf.get('events_per_s'))} events/s"),
            ("first-event latency", f"{_num(perf.get('latency_us'))} µs ({_num(perf.get('latency_cycles'))} cycles)"),
            ("compute", f"{_num(perf.get('tops'))} TOPS"),
            ("bottleneck", f"{perf.get('bottleneck', '–')} ({perf.get('bottleneck_kind', '–')})"),
        ],
        "utilisation": {k: _pct(util[k]) for k in ("min", "mean", "max") if k in util},
        "assumptions": [(k, _assumption(v)) for k, v in assumptions.items()],
        "checked": checked,
        "num": _num,
    }


def render_report(project_dir: str | pathlib.Path) -> str:
    """The HTML text of the project's report."""
    d = pathlib.Path(project_dir)
    summary = load_summary(d)
    try:
        return _ENV.get_template("report.html.j2").render(**_context(d, summary))
    except (AttributeError, KeyError, TypeError, ValueError, jinja2.UndefinedError) as exc:  # edited summary.json
        raise BadFileError(f"project {d}", f"summary.json has an unexpected value ({exc})", _HINT) from None


def write_report(project_dir: str | pathlib.Path, out: str | pathlib.Path | None = None) -> pathlib.Path:
    """Write the report to ``out`` (default ``DIR/report/report.html``) and return its path."""
    d = pathlib.Path(project_dir)
    text = render_report(d)
    path = pathlib.Path(out) if out is not None else d / "report" / REPORT_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadFileError(f"output {path}", f"cannot be written ({exc.strerror or exc})",
                           "choose a writable file path with -o") from None
    return path

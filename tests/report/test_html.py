"""`nn2aie report`: the HTML report shows what summary.json holds (layers, placement picture, modelled performance
with its assumptions, bit-exactness or "not checked"), escapes every model-derived string, is self-contained and
deterministic; bad directories are one-paragraph errors; headless Chromium renders the page and the picture."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from markupsafe import escape

from nn2aie.api import check_bit_exact, compile_path, default_inputs, write_project_atomic
from nn2aie.cli import main
from nn2aie.errors import BadFileError
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.passes.pipeline import CompileOptions
from nn2aie.report.html import render_report, write_report

HOSTILE = "<script>alert(\"x\")</script>&amp;'\" onerror=\"alert(1)"
HOSTILE_FILE = "<script>alert(1)<!--x--> & \"q'.onnx"  # a legal Linux file name


def _project(tmp: Path, model_name: str, check: bool, overrides: dict | None = None) -> Path:
    model = tmp / model_name
    onnx.save(make_qdq_mlp([16, 64, 32, 32, 5], seed=21), model)
    compiled = compile_path(model, CompileOptions(overrides=overrides or {}))
    checked = check_bit_exact(compiled, default_inputs(compiled, events=200, seed=1)) if check else None
    out = tmp / "proj"
    write_project_atomic(compiled, out, checked=checked)
    return out


@pytest.fixture(scope="module")
def checked_project(tmp_path_factory) -> Path:
    """Bit-exact checked, with a 4 x 2 layer (several tiles and a cascade)."""
    return _project(tmp_path_factory.mktemp("checked"), "jet.onnx", True,
                    {"fc1_matmul": {"cas_length": 4, "cas_num": 2}})


@pytest.fixture(scope="module")
def unchecked_hostile_project(tmp_path_factory) -> Path:
    """Written without the check, from a model file whose name is markup."""
    return _project(tmp_path_factory.mktemp("hostile"), HOSTILE_FILE, False)


def _summary(project: Path) -> dict:
    return json.loads((project / "summary.json").read_text())


def _edited_copy(project: Path, dest: Path, edit) -> Path:
    """A copy of the project whose summary.json was changed by ``edit(summary)``."""
    shutil.copytree(project, dest)
    summary = _summary(dest)
    edit(summary)
    (dest / "summary.json").write_text(json.dumps(summary, indent=1))
    return dest


class _Tables(HTMLParser):
    """Text of every cell of ``<tr class="layer">`` rows, and the attributes of every <img>."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.imgs: list[dict] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("class") == "layer":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")
        elif tag == "img":
            self.imgs.append(a)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Tables:
    p = _Tables()
    p.feed(text)
    p.close()
    return p


# -- content --------------------------------------------------------------------------------------------------
def test_layer_rows_equal_summary_layers(checked_project):
    rows = _parse(render_report(checked_project)).rows
    expected = [[x["name"], f"{x['k']} × {x['n']}", x["activation"], x["input_type"], x["weight_type"],
                 x["output_type"], f"{x['mmul']} {x['acc']}", f"{x['cas_length']} × {x['cas_num']}", str(x["tiles"])]
                for x in _summary(checked_project)["layers"]]
    assert [r[:9] for r in rows] == expected
    assert rows[1][7:10] == ["4 × 2", "8", "col 1–4, row 0–1"]  # the forced 4 x 2 layer and where it sits


def test_per_layer_cycles_and_utilisation_come_from_the_modelled_performance(checked_project, tmp_path):
    summary = _summary(checked_project)
    rows = _parse(render_report(checked_project)).rows
    expected = [[f"{m['kernel_cycles_max']:g}", f"{100 * m['utilisation_max']:.1f} %", f"{100 * m['mac_use']:.1f} %"]
                for m in (summary["performance"]["layers"][x["name"]] for x in summary["layers"])]
    assert [r[10:] for r in rows] == expected
    assert len(expected) == 4 and all(0 < float(c[1].rstrip(" %")) <= 100 for c in expected)

    def drop(s):
        del s["performance"]["layers"]

    text = render_report(_edited_copy(checked_project, tmp_path / "p", drop))
    assert "modelled cycles" not in text and "has no per-layer cycle counts or utilisation" in text


def test_placement_picture_is_embedded_and_page_is_self_contained(checked_project):
    text = render_report(checked_project)
    img = next(i for i in _parse(text).imgs if i.get("id") == "placement")
    prefix = "data:image/png;base64,"
    assert img["src"].startswith(prefix)
    assert base64.b64decode(img["src"][len(prefix):]) == (checked_project / "report" / "placement.png").read_bytes()
    # nothing to fetch: every src/href is a data: URI or an in-page anchor, no url() or @import in the CSS
    assert all(v.startswith(("data:", "#")) for v in re.findall(r'(?:src|href)="([^"]*)"', text))
    assert "url(" not in text and "@import" not in text and "<script" not in text.lower()


def test_missing_picture_is_said(checked_project, tmp_path):
    copy = _edited_copy(checked_project, tmp_path / "p", lambda s: None)
    shutil.rmtree(copy / "report")
    text = render_report(copy)
    assert 'id="placement-missing"' in text and "<img" not in text


def test_performance_is_labelled_modelled_with_every_assumption(checked_project):
    text = render_report(checked_project)
    perf = _summary(checked_project)["performance"]
    section = text[text.index('<section id="performance">'):text.index('<section id="bit-exact">')]
    assert "modelled, not measured" in section
    for key, value in perf["assumptions"].items():
        assert f"<code>{key}</code>" in section
        if isinstance(value, str):
            assert escape(value) in section
    assert f"{perf['events_per_s']:,} events/s" in section
    assert f"{perf['latency_us']} µs" in section and f"{perf['tops']} TOPS" in section
    assert perf["bottleneck"] in section


def test_bit_exact_evidence(checked_project):
    text = render_report(checked_project)
    c = _summary(checked_project)["bit_exact_check"]
    assert c["bit_exact"] and c["events"] == 200
    section = text[text.index('<section id="bit-exact">'):]
    assert "badge ok" in section and c["reference"] in section
    assert f"{c['matching_outputs']:,} / {c['outputs']:,}" in section and "not checked" not in section


def test_unchecked_project_says_not_checked(unchecked_hostile_project):
    assert _summary(unchecked_hostile_project)["bit_exact_check"] == {}
    section = render_report(unchecked_hostile_project).split('<section id="bit-exact">')[1]
    assert 'id="not-checked"' in section and "not checked" in section and "badge ok" not in section


def test_hostile_names_are_escaped(unchecked_hostile_project, tmp_path):
    # compile makes layer names C-safe, so the file name is the only markup a compiled project carries ...
    text = render_report(unchecked_hostile_project)
    assert _summary(unchecked_hostile_project)["model"]["file"] == HOSTILE_FILE
    assert escape(HOSTILE_FILE) in text and "<script" not in text.lower() and "<!--" not in text

    # ... but the report must not trust summary.json: every string field an editor could fill with markup
    def poison(s):
        s["model"]["name"] = s["layers"][0]["name"] = s["plios"][0]["name"] = HOSTILE
        s["layers"][1]["input_type"] = s["performance"]["bottleneck"] = HOSTILE
        s["performance"]["assumptions"]["buffers"] = HOSTILE
        s["performance"]["assumptions"][HOSTILE] = [HOSTILE]
        next(iter(s["resources"].values()))["where"] = HOSTILE

    text = render_report(_edited_copy(unchecked_hostile_project, tmp_path / "p", poison))
    assert "<script" not in text.lower() and 'onerror="' not in text
    assert text.count(escape(HOSTILE)) >= 8  # the title, headings, table cells and the alt="" attribute
    assert _parse(text).rows[0][0] == HOSTILE  # and a browser shows the name as text


def test_output_is_deterministic_and_independent_of_the_directory(checked_project, tmp_path):
    first = render_report(checked_project)
    assert render_report(checked_project) == first
    moved = shutil.copytree(checked_project, tmp_path / "elsewhere")
    assert render_report(moved) == first
    assert str(checked_project) not in first


def test_cli_writes_default_and_given_path(checked_project, tmp_path):
    copy = shutil.copytree(checked_project, tmp_path / "p")
    r = CliRunner().invoke(main, ["report", str(copy)])
    assert r.exit_code == 0, r.output
    default = copy / "report" / "report.html"
    assert r.output.strip() == str(default) and default.read_text() == render_report(copy)
    out = tmp_path / "sub" / "r.html"
    r = CliRunner().invoke(main, ["-q", "report", str(copy), "-o", str(out)])
    assert r.exit_code == 0 and r.output.strip() == str(out)  # the path is requested output: printed with -q too
    assert out.read_text() == default.read_text()
    assert write_report(copy) == default


@pytest.mark.parametrize("case", ["missing", "no-summary", "corrupt", "not-a-dict", "other-generator",
                                  "other-version", "incomplete"])
def test_bad_project_dir_is_one_paragraph_exit_2(case, checked_project, tmp_path):
    d = tmp_path / "d"
    if case != "missing":
        d.mkdir()
    text = {"corrupt": "{not json", "not-a-dict": "[1, 2]", "other-generator": json.dumps({"generator": "hls4ml"}),
            "other-version": json.dumps(_summary(checked_project) | {"generator": "nn2aie 0.0.1"}),
            "incomplete": json.dumps({k: v for k, v in _summary(checked_project).items() if k != "layers"})}.get(case)
    if text is not None:
        (d / "summary.json").write_text(text)
    with pytest.raises(BadFileError):
        render_report(d)
    r = subprocess.run([sys.executable, "-m", "nn2aie.cli", "report", str(d)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"nn2aie: bad input file at project {d}: ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not (d / "report").exists()


# -- headless Chromium ----------------------------------------------------------------------------------------
WINDOW = (1280, 2000)
# after load, write what the browser decoded and where it drew the picture into the DOM (for --dump-dom)
_PROBE = """<script>
window.addEventListener("load", () => {
  const img = document.getElementById("placement"), r = img.getBoundingClientRect();
  document.body.setAttribute("data-probe", JSON.stringify({complete: img.complete, w: img.naturalWidth,
    h: img.naturalHeight, x: r.left, y: r.top, width: r.width, height: r.height}));
});
</script>"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium; .ci/run installs it)")
    return exe


def _browse(exe: str, tmp: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
           f"--user-data-dir={tmp / 'chromium-profile'}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
           "--enable-logging=stderr", "--v=0", *args, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _console_errors(stderr: str) -> list[str]:
    """Lines of the page's console (our page has no script, so any is a problem) and uncaught JS errors."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def _probe(exe: str, tmp: Path, page: Path) -> dict:
    probed = tmp / f"{page.stem}.probe.html"
    probed.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    r = _browse(exe, tmp, probed, "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r'data-probe="([^"]*)"', r.stdout)
    assert m, "the probe did not run: " + r.stderr[-2000:]
    return json.loads(html.unescape(m.group(1)))


def test_chromium_renders_report_and_placement_picture(checked_project, tmp_path):
    from PIL import Image  # matplotlib's own dependency

    exe = _chromium()
    page = write_report(checked_project, tmp_path / "report.html")

    # 1. the page loads without console or JS errors, and the DOM holds the picture and the layer table
    r = _browse(exe, tmp_path, page, "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    assert _console_errors(r.stderr) == []
    assert re.search(r'<img id="placement" src="data:image/png;base64,', r.stdout)
    assert 'id="layer-table"' in r.stdout
    assert r.stdout.count('<tr class="layer">') == len(_summary(checked_project)["layers"])

    # 2. the browser decoded the embedded PNG at its real size (a copy of the page reports what it decoded)
    png = Image.open(checked_project / "report" / "placement.png")
    probe = _probe(exe, tmp_path, page)
    assert probe["complete"] and (probe["w"], probe["h"]) == png.size
    x0, y0 = round(probe["x"]), round(probe["y"])
    x1, y1 = x0 + round(probe["width"]), y0 + round(probe["height"])
    assert 0 <= x0 < x1 <= WINDOW[0] and 0 <= y0 < y1 <= WINDOW[1], probe

    # 3. the screenshot shows the picture where the layout put it: the pixels there correlate with the PNG
    shot = tmp_path / "report.png"
    r = _browse(exe, tmp_path, page, f"--screenshot={shot}")
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    assert _console_errors(r.stderr) == []
    screen = Image.open(shot).convert("L")
    assert screen.size == WINDOW
    assert np.asarray(screen, dtype=float).std() > 20  # text, tables and the picture, not a blank page
    region = _blocks(np.asarray(screen.crop((x0, y0, x1, y1)), dtype=float))
    white = Image.new("RGBA", png.size, "white")
    reference = Image.alpha_composite(white, png.convert("RGBA")).convert("L").resize((x1 - x0, y1 - y0))
    reference = _blocks(np.asarray(reference, dtype=float))
    assert region.std() > 5, "the picture region of the screenshot is blank"
    assert np.corrcoef(region.ravel(), reference.ravel())[0, 1] > 0.95  # another design's picture: ~0.85


def _blocks(a: np.ndarray, size: int = 8) -> np.ndarray:
    """Means of size x size blocks: compares layouts, not how two scalers draw 1-pixel lines."""
    h, w = a.shape[0] // size * size, a.shape[1] // size * size
    return a[:h, :w].reshape(h // size, size, w // size, size).mean(axis=(1, 3))


def test_chromium_checks_are_not_vacuous(tmp_path):
    """The same probes flag a script error and an image that does not decode."""
    exe = _chromium()
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img id="placement" src="data:image/png;base64,AAAA">'
                    '<script>throw new Error("boom")</script></body></html>')
    r = _browse(exe, tmp_path, page, "--dump-dom")
    assert any("Uncaught Error: boom" in line for line in _console_errors(r.stderr)), r.stderr[-2000:]
    assert _probe(exe, tmp_path, page)["w"] == 0


def test_report_of_the_demo_project_renders_in_chromium(tmp_path):
    """The acceptance path as a user runs it: `nn2aie demo`, then `nn2aie report` on its project."""
    exe = _chromium()
    demo = tmp_path / "demo"
    for args in (["demo", "-o", str(demo)], ["report", str(demo)]):
        r = subprocess.run([sys.executable, "-m", "nn2aie.cli", *args], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    page = demo / "report" / "report.html"
    assert r.stdout.strip() == str(page)
    shot = tmp_path / "demo.png"
    r = _browse(exe, tmp_path, page, f"--screenshot={shot}")
    assert r.returncode == 0 and _console_errors(r.stderr) == [], r.stderr[-2000:]
    from PIL import Image  # matplotlib's own dependency

    assert shot.is_file() and np.asarray(Image.open(shot).convert("L"), dtype=float).std() > 20  # not blank
    probe = _probe(exe, tmp_path, page)
    assert probe["complete"] and probe["w"] > 0 and probe["h"] > 0  # the placement picture decoded
    dom = html.unescape(re.sub(r"<[^>]+>", " ", _browse(exe, tmp_path, page, "--dump-dom").stdout))
    assert re.search(r"outputs matching\s+5,000 / 5,000", dom), dom[-3000:]  # the demo checks 1000 events x 5

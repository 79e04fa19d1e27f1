"""Progress of long steps: drawn by rich on a terminal, silent by default, never changing a result, and never on
the output of --quiet, --json, pipes or tests."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from rich.console import Console

import nn2aie.cli as cli
from nn2aie import progress
from nn2aie.api import compile_path, default_inputs
from nn2aie.examples.builders import make_qdq_mlp
from nn2aie.sim import emulator


class Recorder(progress.Reporter):
    """Records the steps it is shown."""

    def __init__(self):
        self.steps: list[dict] = []

    def start(self, description, total):
        self.steps.append({"description": description, "total": total, "done": 0, "open": True})
        return len(self.steps) - 1

    def advance(self, handle, amount):
        self.steps[handle]["done"] += amount

    def describe(self, handle, description):
        self.steps[handle]["description"] = description

    def stop(self, handle):
        self.steps[handle]["open"] = False


def _terminal() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=100, color_system=None), buf


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "mlp.onnx"
    onnx.save(make_qdq_mlp([64, 48, 32, 8], seed=6), path)
    return path


def test_rich_reporter_draws_nested_steps_on_a_terminal():
    console, buf = _terminal()
    reporter = progress.RichReporter(console)
    with progress.reporting(reporter):
        with progress.task("outer step") as outer:
            with progress.task("emulating 1,000 events", total=1000) as bar:
                assert reporter.active
                bar.advance(250)
                reporter._progress.refresh()
                bar.advance(750)
            outer.describe("outer step, renamed")
            reporter._progress.refresh()
    assert not reporter.active
    text = buf.getvalue()
    assert "outer step" in text and "emulating 1,000 events" in text and "250/1000" in text
    assert "outer step, renamed" in text


def test_silent_by_default(capsys):
    assert not progress.current().active
    with progress.task("nothing to see", total=3) as bar:
        bar.advance(3)
    assert capsys.readouterr() == ("", "")


def test_emulation_progress_counts_every_event_and_changes_nothing(model, monkeypatch):
    compiled = compile_path(model)
    x = compiled.quantize(default_inputs(compiled, events=5001))
    quiet = compiled.emulate_codes(x)
    monkeypatch.setattr(emulator, "CHUNK_ELEMENTS", 4096)  # several chunks
    monkeypatch.setattr(emulator, "PROGRESS_MACS", 0)  # every run counts as large
    recorder = Recorder()
    with progress.reporting(recorder):
        shown = emulator.Emulator(compiled.plan).run(x)
    assert np.array_equal(shown, quiet)
    (step,) = recorder.steps
    assert step["description"] == "emulating 5,001 events" and not step["open"]
    assert step["done"] == step["total"] == 5004  # whole graph iterations of batch 4


def test_small_emulation_shows_nothing(model):
    compiled = compile_path(model)
    recorder = Recorder()
    with progress.reporting(recorder):
        compiled.emulate(default_inputs(compiled, events=100))
    assert recorder.steps == []


def test_placement_spinner_leaves_the_plan_alone(model):
    recorder = Recorder()
    with progress.reporting(recorder):
        shown = compile_path(model).plan.to_json()
    assert shown == compile_path(model).plan.to_json()
    assert [s["description"] for s in recorder.steps] == ["placement: CP-SAT search over 3 layer rectangles"]
    assert not any(s["open"] for s in recorder.steps)


@pytest.fixture()
def forced_terminal(monkeypatch):
    """The command line believes stderr is a terminal and draws progress into a buffer."""
    console, buf = _terminal()
    monkeypatch.setattr(cli, "_stderr_is_terminal", lambda: True)
    monkeypatch.setattr(cli, "_progress_console", lambda: console)
    return buf


def test_cli_draws_progress_on_a_terminal(model, tmp_path, forced_terminal):
    r = CliRunner().invoke(cli.main, ["compile", str(model), "-o", str(tmp_path / "p"), "--no-check"])
    assert r.exit_code == 0, r.output
    assert "placement: CP-SAT search" in forced_terminal.getvalue()  # the control for the tests below
    assert "placement: CP-SAT" not in r.stdout and "compiled " in r.stdout


@pytest.mark.parametrize("flags, args", [(["-q"], []), ([], ["--json"])])
def test_quiet_and_json_show_no_progress(model, tmp_path, forced_terminal, flags, args):
    r = CliRunner().invoke(cli.main, [*flags, "compile", str(model), "-o", str(tmp_path / "p"), "--no-check", *args])
    assert r.exit_code == 0, r.output
    assert forced_terminal.getvalue() == "" and r.stderr == ""
    if args:
        assert json.loads(r.stdout)["tiles_used"] > 0  # nothing but the JSON document
    else:
        assert r.stdout == ""


@pytest.mark.parametrize("stdout_terminal", [False, True])
def test_explore_shows_its_designs_in_the_progress_line(model, tmp_path, forced_terminal, monkeypatch,
                                                        stdout_terminal):
    monkeypatch.setattr(cli, "_stdout_is_terminal", lambda: stdout_terminal)
    r = CliRunner().invoke(cli.main, ["explore", str(model), "-o", str(tmp_path / "e"), "--max-tiles", "6"])
    assert r.exit_code == 0, r.output
    drawn = forced_terminal.getvalue()
    assert "design-space exploration: batch 4:" in drawn
    # one terminal for both: the per-design lines are printed above the progress line instead of through it;
    # stdout elsewhere (a pipe, a file): they go there as always
    assert ("  batch 4: " in drawn) == stdout_terminal and ("  batch 4: " in r.stdout) != stdout_terminal
    assert "designs explored" in r.stdout  # the result (printed after the progress line is gone)


def test_errors_cannot_drive_the_terminal(tmp_path):
    r = CliRunner().invoke(cli.main, ["compile", str(tmp_path / "no\x1b[2Jsuch.onnx"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "\x1b" not in r.stderr and "no\\x1b[2Jsuch.onnx" in r.stderr

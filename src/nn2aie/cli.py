"""The ``nn2aie`` command.

Errors from nn2aie are printed as one paragraph and exit with code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import json
import pathlib
import re
import sys
import time
from importlib import resources

import click
import numpy as np

from nn2aie import __version__
from nn2aie.errors import BadFileError, DoesNotFitError, IllegalConfigError, Nn2aieError
from nn2aie.passes.pipeline import PASS_NAMES, CompileOptions

EXAMPLES = {"jet_tagger": "jet_tagger_qdq.onnx"}


class _State:
    debug = False
    quiet = False


def _say(msg: str = "") -> None:
    if _State.quiet:
        return
    from nn2aie import progress

    shown = progress.current()
    if shown.active and _stdout_is_terminal():  # one terminal: print above the progress lines, not through them
        shown.print(msg)
    else:
        click.echo(msg)


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def _progress_console():
    """The console progress is drawn on (stderr; a function so that tests can draw elsewhere)."""
    from rich.console import Console

    return Console(stderr=True)


def _showing_progress(fn, json_out: bool = False):
    """``fn`` with rich progress of long steps on stderr: only on a terminal, never with --quiet or --json (so
    pipes, scripts and tests get exactly the output they ask for)."""
    def wrapped(*args, **kwargs):
        if _State.quiet or json_out or not _stderr_is_terminal():
            return fn(*args, **kwargs)
        from nn2aie import progress

        with progress.reporting(progress.RichReporter(_progress_console())):
            return fn(*args, **kwargs)

    return wrapped


# C0/C1 control characters other than newline and tab: a model's names must not drive the user's terminal
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Nn2aieError as exc:
        if _State.debug:
            raise
        message = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(exc))
        click.echo(f"nn2aie: {message}", err=True)
        sys.exit(2)


def _parse_override(values: tuple[str, ...]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for v in values:
        try:
            name, rect = v.rsplit("=", 1)
            length, num = (int(p) for p in rect.lower().split("x"))
        except ValueError:
            raise IllegalConfigError(f"--parallel {v!r}", "expected LAYER=LxC (cas_length x cas_num)",
                                     "e.g. --parallel dense1=4x2") from None
        out[name] = {"cas_length": length, "cas_num": num}
    return out


def _input_types(items) -> dict[str, str]:
    out = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise IllegalConfigError(f"--input-type {item}", "expected NAME=TYPE",
                                     "e.g. --input-type x=ap_fixed<8,3,AP_RND_CONV,AP_SAT>")
        out[name.strip()] = text.strip()
    return out


def _options(device, batch, plio_bits, pl_freq, max_weight_bytes, parallel, config, input_type=()) -> CompileOptions:
    overrides: dict[str, dict] = {}
    if config:
        try:
            data = json.loads(pathlib.Path(config).read_text())
        except (OSError, ValueError) as exc:
            raise BadFileError(f"config {config}", f"unreadable JSON ({exc})", "fix the file") from None
        if not isinstance(data, dict) or set(data) - {"layers"} or not isinstance(data.get("layers", {}), dict):
            raise IllegalConfigError(f"config {config}", "expected {\"layers\": {NAME: {\"cas_length\": L, "
                                     "\"cas_num\": C, \"mmul\": \"MxKxN\"}}}", "see docs/cli.md")
        overrides.update(data.get("layers", {}))
    for name, rect in _parse_override(parallel).items():  # --parallel sets the rectangle, keeps a config's mmul
        overrides[name] = {**overrides.get(name, {}), **rect} if isinstance(overrides.get(name), dict) else rect
    return CompileOptions(device=device, batch=batch, plio_bits=plio_bits, pl_freq_mhz=pl_freq,
                          max_weight_bytes=max_weight_bytes, overrides=overrides, input_types=_input_types(input_type))


def _load_inputs(path: str | None):
    """A .npy array (one model input), or a .npz archive for a model with several inputs: arrays named by the
    model's input names (``numpy.savez(path, tracks=..., calo=...)``) or positional (``arr_0``, ``arr_1``, ...
    in the model's input order)."""
    if path is None:
        return None
    try:
        x = np.load(path, allow_pickle=False)
        if isinstance(x, np.lib.npyio.NpzFile):
            with x:
                arrays = {k: x[k] for k in x.files}
            positional = [f"arr_{i}" for i in range(len(arrays))]
            return [arrays[k] for k in positional] if sorted(arrays) == sorted(positional) else arrays
    except (OSError, ValueError) as exc:
        raise BadFileError(f"inputs {path}", f"cannot be read as a .npy array or .npz archive ({exc})",
                           "save inputs with numpy.save(path, array) as a float [events, features] array "
                           "(several model inputs: numpy.savez(path, name=array, ...))") from None
    return x


def _save_outputs(out: str, names: list[str], y, codes) -> None:
    """One output: ``out`` (.npy) and its codes next to it; several: .npz archives keyed by output name."""
    if isinstance(y, list):
        stem = str(pathlib.Path(out).with_suffix(""))
        np.savez(stem + ".npz", **dict(zip(names, y, strict=True)))
        np.savez(stem + ".codes.npz", **dict(zip(names, codes, strict=True)))
        return
    np.save(out, y)
    np.save(str(pathlib.Path(out).with_suffix("")) + ".codes.npy", codes)


compile_options = [
    click.option("--device", default="xcve2802", show_default=True, help="Target part (see `nn2aie devices`)."),
    click.option("--batch", default=4, show_default=True, help="Events per graph iteration (1: lowest latency)."),
    click.option("--plio-bits", default=128, show_default=True, type=click.Choice(["32", "64", "128"]),
                 callback=lambda c, p, v: int(v), help="PLIO width."),
    click.option("--pl-freq", default=None, type=float, help="PL clock of the PLIOs in MHz (default: catalog)."),
    click.option("--max-weight-bytes", default=None, type=int,
                 help="Weight bytes allowed per tile (default: one 16 KB bank)."),
    click.option("--parallel", multiple=True, metavar="LAYER=LxC",
                 help="Force a layer's cas_length x cas_num, e.g. --parallel dense1=4x2 (repeatable)."),
    click.option("--input-type", multiple=True, metavar="NAME=TYPE",
                 help="Cast a float graph input the model reads without a quantizer into an ap_fixed type on the "
                      "host, e.g. --input-type x=ap_fixed<8,3,AP_RND_CONV,AP_SAT> (repeatable)."),
    click.option("--config", type=click.Path(dir_okay=False), default=None,
                 help="JSON file {\"layers\": {NAME: {\"cas_length\": L, \"cas_num\": C, \"mmul\": \"MxKxN\"}}} "
                      "(each key optional)."),
]


def with_compile_options(fn):
    for opt in reversed(compile_options):
        fn = opt(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nn2aie")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors and requested output.")
def main(debug: bool, quiet: bool) -> None:
    """Compile quantized neural networks (ONNX QDQ, QONNX/Brevitas) into AMD AIE-ML projects, bit-exact.

    \b
    Examples:
      nn2aie demo
      nn2aie compile model.onnx -o build/model
      nn2aie simulate build/model --inputs x.npy -o y.npy
      nn2aie devices
    """
    _State.debug, _State.quiet = debug, quiet


@main.command("devices")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def devices_cmd(as_json: bool) -> None:
    """List the device catalog.

    \b
    Examples:
      nn2aie devices
      nn2aie devices --json
    """
    from nn2aie.devices import get_device, part_names

    rows = [get_device(n).summary() for n in part_names()]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'part':<11} {'generation':<10} {'board':<10} {'cols x rows':<11} {'tiles':>5} {'memtiles':>8} "
               f"{'AIE MHz':>7}  target")
    for r in rows:
        click.echo(f"{r['name']:<11} {r['generation']:<10} {r['board'][:10]:<10} "
                   f"{str(r['columns']) + ' x ' + str(r['compute_rows']):<11} {r['tiles']:>5} {r['memtiles']:>8} "
                   f"{r['aie_clock_mhz']:>7.0f}  {'yes' if r['supported'] else 'catalogued only'}")


def _compile_and_write(model, out, options, inputs, check, dump_after, force, json_out):
    from nn2aie.api import check_bit_exact, compile_path, default_inputs, write_project_atomic
    from nn2aie.report.text import performance_summary, placement_picture, placement_summary

    t0 = time.perf_counter()
    compiled = compile_path(model, options, dump_after=dump_after)
    if compiled.dump is not None:
        click.echo(compiled.dump)
    x = _load_inputs(inputs)
    x_check = x if x is not None else default_inputs(compiled, events=1000, seed=1)
    checked = check_bit_exact(compiled, x_check) if check else None
    summary = write_project_atomic(compiled, out, x, force=force, checked=checked)
    elapsed = time.perf_counter() - t0
    if json_out:
        click.echo(json.dumps(summary, indent=1, sort_keys=True))
    else:
        _say(f"compiled {model} -> {out} in {elapsed:.2f} s")
        _say(f"device {compiled.plan.device}: {summary['tiles_used']} compute tiles, "
             f"{summary['memory_tiles_used']} memory-tile buffers, {len(compiled.plan.plios)} PLIOs")
        for layer in summary["layers"]:
            shape = f"{layer['k']:>5}x{layer['n']:<5}" if "k" in layer else f"{layer.get('family', ''):<11}"
            kernel = f"mmul {layer['mmul']} {layer['acc']}" if "mmul" in layer else layer.get("variant", "")
            _say(f"  {layer['name']:<16} {shape} {layer['cas_length']}x{layer['cas_num']} "
                 f"tiles  {kernel}  {layer['input_type']} -> {layer['output_type']}")
        _say(placement_picture(compiled.plan))
        _say(placement_summary(compiled.plan, str(out)))
        _say(performance_summary(summary["performance"]))
        if checked:
            _say(_bit_exact_line(checked))
    return compiled, summary


def _bit_exact_line(checked: dict) -> str:
    line = (f"bit-exact: {checked['matching_outputs']}/{checked['outputs']} outputs match the reference "
            f"({checked['reference']}, {checked['events']} events)")
    if not checked["bit_exact"]:
        line += f"; first mismatch {checked['first_mismatch']}"
    if checked.get("integer_algorithms"):
        line += (f" (the source computes {', '.join(checked['integer_algorithms'])} in float, nn2aie by the "
                 "integer algorithm of docs/numerics.md: a few outputs may differ by one code)")
    return line


@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False),
              help="Project directory to write (replaced atomically).")
@with_compile_options
@click.option("--inputs", type=click.Path(dir_okay=False), default=None,
              help="Float inputs (.npy, [events, features]; several model inputs: .npz by input name) for the "
                   "project's PLIO files and the bit-exact check.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare the emulated design with the source framework's execution.")
@click.option("--dump-after", type=click.Choice(PASS_NAMES), default=None, help="Print the plan after a pass.")
@click.option("--force", is_flag=True, help="Replace a non-empty directory nn2aie did not write.")
@click.option("--json", "json_out", is_flag=True, help="Print the summary as JSON.")
@click.option("--target-events-per-s", type=float, default=None,
              help="Choose batch and parallelism to reach this modelled throughput (fewest tiles that do).")
@click.option("--target-latency-us", type=float, default=None,
              help="Choose batch and parallelism for at most this modelled first-event latency.")
@click.option("--max-tiles", type=int, default=None, help="Tile budget of the design-space exploration.")
def compile_cmd(model, out, device, batch, plio_bits, pl_freq, max_weight_bytes, parallel, input_type, config, inputs,
                check, dump_after, force, json_out, target_events_per_s, target_latency_us, max_tiles) -> None:
    """Compile MODEL (.onnx: QDQ or QONNX) into a Vitis AIE-ML project in DIR, with summary.json.

    \b
    Examples:
      nn2aie compile jet.onnx -o build/jet
      nn2aie compile jet.onnx -o build/jet --parallel dense1=4x2 --batch 8
      nn2aie compile jet.onnx -o build/jet --target-events-per-s 40e6 --target-latency-us 1
      nn2aie -q compile jet.onnx -o build/jet --inputs x.npy --json > summary.json
    """
    def go():
        options = _options(device, batch, plio_bits, pl_freq, max_weight_bytes, parallel, config, input_type)
        if target_events_per_s is not None or target_latency_us is not None or max_tiles is not None:
            options = _explore_for_targets(model, options, target_events_per_s, target_latency_us, max_tiles,
                                           json_out)
        _, summary = _compile_and_write(model, out, options, inputs, check, dump_after, force, json_out)
        checked = summary.get("bit_exact_check") or {}
        if checked and not checked["bit_exact"]:
            sys.exit(1)

    _run(_showing_progress(go, json_out))


def _explore(graph, options, max_tiles, echo: bool = True) -> list:
    """dse.explore with a progress line that names the design just modelled (display only); ``echo`` also prints
    one line per design."""
    from nn2aie import dse, progress

    with progress.task("design-space exploration") as shown:
        def step(message: str) -> None:
            shown.advance()
            shown.describe(f"design-space exploration: {message}")
            if echo:
                _say(f"  {message}")

        return dse.explore(graph, options, max_tiles, progress=step)


def _explore_for_targets(model, options, events_per_s, latency_us, max_tiles, quiet_json):
    """Run the design-space exploration and return the options of the chosen design (layers the user fixed with
    --parallel/--config stay as given)."""
    from nn2aie import dse
    from nn2aie.frontends.loader import load_model

    for name, value in (("--target-events-per-s", events_per_s), ("--target-latency-us", latency_us),
                        ("--max-tiles", max_tiles)):
        if value is not None and value <= 0:
            raise IllegalConfigError(f"option {name}", f"{value} is not positive", "give a positive number")
    graph = load_model(model, input_types=options.input_types).graph
    points = _explore(graph, options, max_tiles, echo=not quiet_json)
    best, why = dse.choose(points, events_per_s, latency_us)
    if not quiet_json:
        _say(f"design-space exploration ({len(points)} designs): {why}")
    return CompileOptions(device=options.device, batch=best.batch, plio_bits=options.plio_bits,
                          pl_freq_mhz=options.pl_freq_mhz, max_weight_bytes=options.max_weight_bytes,
                          overrides=best.overrides, input_types=dict(options.input_types))


@main.command("explore")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False),
              help="Directory for pareto.md, pareto.json and pareto.png.")
@with_compile_options
@click.option("--max-tiles", type=int, default=None, help="Tile budget.")
def explore_cmd(model, out, device, batch, plio_bits, pl_freq, max_weight_bytes, parallel, input_type, config,
                max_tiles) -> None:
    """Explore batch and per-layer parallelism of MODEL with the performance model; write the Pareto front
    (tiles vs latency vs throughput) as a table and a plot.

    \b
    Example:
      nn2aie explore jet.onnx -o build/jet_explore --max-tiles 64
    """
    def go():
        from nn2aie import dse
        from nn2aie.frontends.loader import load_model
        from nn2aie.report.pareto import write_pareto

        options = _options(device, batch, plio_bits, pl_freq, max_weight_bytes, parallel, config, input_type)
        points = _explore(load_model(model, input_types=options.input_types).graph, options, max_tiles)
        if not points:
            raise DoesNotFitError("design space", "no design of this model compiles within the limits",
                                  "raise --max-tiles or use a larger device")
        front = dse.pareto(points)
        paths = write_pareto(points, front, pathlib.Path(out), str(model))
        _say(f"{len(points)} designs explored, {len(front)} on the Pareto front; wrote "
             + ", ".join(str(p) for p in paths))

    _run(_showing_progress(go))


@main.command("bench")
@click.option("--with-aie4ml", is_flag=True, help="Also run the comparison with aie4ml 0.2.1 (needs PyPI).")
@click.option("--quick", is_flag=True, help="Fewer events and repeats.")
def bench_cmd(with_aie4ml: bool, quick: bool) -> None:
    """Run the benchmark suite of a source checkout and write benchmarks/RESULTS.md.

    \b
    Example (from the repository root):
      nn2aie bench --quick
    """
    def go():
        import subprocess

        candidates = [pathlib.Path.cwd() / "benchmarks", pathlib.Path(__file__).resolve().parents[2] / "benchmarks"]
        script = next((c / "run_all.py" for c in candidates if (c / "run_all.py").is_file()), None)
        if script is None:
            raise BadFileError("benchmarks/run_all.py", "not found next to the current directory or the installed "
                               "sources", "run nn2aie bench from a checkout of the nn2aie repository")
        args = [sys.executable, str(script)] + (["--with-aie4ml"] if with_aie4ml else []) + (["--quick"] if quick
                                                                                             else [])
        sys.exit(subprocess.run(args).returncode)

    _run(go)


@main.command("simulate")
@click.argument("target", type=click.Path())
@click.option("--inputs", required=True, type=click.Path(dir_okay=False),
              help="Float inputs .npy [events, features] (several model inputs: .npz by input name).")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), default=None,
              help="Write dequantized outputs (.npy); integer codes go to the same name with .codes.npy. Several "
                   "model outputs: .npz archives keyed by output name.")
@with_compile_options
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare with the source framework's own execution.")
@click.option("--native", is_flag=True,
              help="Also compile the generated kernel C++ with g++ (AIE-API emulation headers) and compare every "
                   "tile with the emulator, bit for bit.")
@click.option("--json", "json_out", is_flag=True, help="Print the result as JSON.")
def simulate_cmd(target, inputs, out, device, batch, plio_bits, pl_freq, max_weight_bytes, parallel, input_type, config,
                 check, native, json_out) -> None:
    """Emulate the placed design of TARGET (a model file or a project directory), bit-exact.

    \b
    Examples:
      nn2aie simulate build/jet --inputs x.npy -o y.npy
      nn2aie simulate jet.onnx --inputs x.npy --batch 8 --no-check
      nn2aie simulate build/jet --inputs x.npy --native      # also run the emitted kernels compiled with g++
      nn2aie simulate build/jet --inputs x.npy --json | jq .check.bit_exact
    """
    def go():
        from nn2aie.api import check_bit_exact, compile_path, events_of, load_project

        path = pathlib.Path(target)
        if path.is_dir():
            given = _options(device, batch, plio_bits, pl_freq, max_weight_bytes, parallel, config, input_type)
            if given != CompileOptions():
                raise IllegalConfigError(f"simulate {target}", "compile options were given for a project directory, "
                                         "which keeps the options it was compiled with",
                                         "drop them, or simulate the model file with the options instead")
            compiled = load_project(path)
        else:
            options = _options(device, batch, plio_bits, pl_freq, max_weight_bytes, parallel, config, input_type)
            compiled = compile_path(path, options)
        x = _load_inputs(inputs)
        t0 = time.perf_counter()
        codes = compiled.emulate_codes(compiled.quantize(x))
        elapsed = time.perf_counter() - t0
        y = compiled.dequantize(codes)
        events = events_of(codes)
        result: dict = {"events": events, "emulation_s": round(elapsed, 3),
                        "events_per_s": round(events / max(elapsed, 1e-9))}
        if out:
            _save_outputs(out, compiled.output_names, y, codes)
            result["output"] = out if not isinstance(y, list) else str(pathlib.Path(out).with_suffix(".npz"))
        if check:
            result["check"] = check_bit_exact(compiled, x)
        report = compiled.native_cosim(x, progress=None if json_out else _say) if native else None
        if report is not None:
            result["native"] = report.to_json()
        if json_out:
            click.echo(json.dumps(result, indent=1, sort_keys=True))
        else:
            _say(f"emulated {result['events']} events in {elapsed:.2f} s ({result['events_per_s']} events/s)"
                 + (f"; outputs written to {out}" if out else ""))
            if check:
                _say(_bit_exact_line(result["check"]))
            if report is not None:
                (_say if report.all_match else click.echo)(report.format())
        if (check and not result["check"]["bit_exact"]) or (report is not None and not report.all_match):
            sys.exit(1)

    _run(_showing_progress(go, json_out))


@main.command("demo")
@click.option("-o", "--output", "out", default="nn2aie_demo", show_default=True, type=click.Path(file_okay=False),
              help="Where to write the demo project.")
@click.option("--events", default=1000, show_default=True, help="Random events for the bit-exact check.")
@click.option("--example", default="jet_tagger", type=click.Choice(sorted(EXAMPLES)), show_default=True)
def demo_cmd(out: str, events: int, example: str) -> None:
    """Compile, emulate and report a bundled example model (no arguments needed).

    \b
    Examples:
      nn2aie demo
      nn2aie demo -o /tmp/jet --events 100000
    """
    def go():
        model = resources.files("nn2aie.examples").joinpath(EXAMPLES[example])
        with resources.as_file(model) as path:
            _say(f"nn2aie demo: bundled {example} model ({path.name}), ONNX QDQ, checked against onnxruntime")
            from nn2aie.api import check_bit_exact, compile_path, default_inputs

            compiled = compile_path(path, CompileOptions())
            x = default_inputs(compiled, events=events, seed=1)
            checked = check_bit_exact(compiled, x)
            from nn2aie.api import write_project_atomic
            from nn2aie.report.text import performance_summary, placement_picture, placement_summary

            summary = write_project_atomic(compiled, out, None, force=False, checked=checked)
            _say(f"project written to {out}/ (Vitis AIE-ML project: src/graph.h, kernels, data, Makefile)")
            _say(f"tiles used: {summary['tiles_used']} compute tiles of {compiled.plan.device} "
                 f"+ {summary['memory_tiles_used']} memory-tile buffers")
            for layer in summary["layers"]:
                shape = f"{layer['k']:>4}->{layer['n']:<4}" if "k" in layer else f"{layer.get('family', ''):<10}"
                _say(f"  {layer['name']:<10} {shape} {layer['cas_length']}x"
                     f"{layer['cas_num']} tiles at {layer['tiles_at']}")
            _say("placement:")
            _say(placement_picture(compiled.plan))
            _say(placement_summary(compiled.plan, str(out)))
            _say(performance_summary(summary["performance"]))
            _say(_bit_exact_line(checked))
            if not checked["bit_exact"]:
                sys.exit(1)

    _run(_showing_progress(go))


@main.command("report")
@click.argument("project", metavar="DIR", type=click.Path())
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), default=None,
              help="HTML file to write (default: DIR/report/report.html).")
def report_cmd(project: str, out: str | None) -> None:
    """Write a self-contained HTML report of the project in DIR (model, layers, placement picture, modelled
    performance with its assumptions, bit-exactness) and print its path.

    \b
    Examples:
      nn2aie report build/jet
      nn2aie report nn2aie_demo -o jet_report.html
    """
    def go():
        from nn2aie.report.html import write_report

        click.echo(write_report(project, out))  # the path is the requested output, so --quiet keeps it

    _run(go)


if __name__ == "__main__":  # pragma: no cover
    main()

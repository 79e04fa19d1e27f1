"""The documented fuzz run: ``python -m tests.fuzz.run --cases 600 --seed 0`` (from the repository root).

Prints a summary (cases, successes, typed errors per class, untyped exceptions, internal-check failures, hangs,
crashes, mismatches, wall time), writes it to ``benchmarks/results/fuzz.md`` (``--out``) and every finding's
traceback to ``benchmarks/results/fuzz_failures.txt``. Exit code 1 when there is any finding.

``--only N`` reruns case N of the seeded run (add ``--in-process`` to get the traceback right here, without the
worker and the time limit).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import pathlib
import platform
import sys
import time

from .harness import DEFAULT_TIMEOUT_S, GOOD, Outcome, run_cases
from .mutators import Case, make_case

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "fuzz.md"


def summarize(outcomes: list[Outcome], seed: int, timeout: float, wall: float, command: str) -> str:
    status = collections.Counter(o.status for o in outcomes)
    typed = collections.Counter(o.error_class for o in outcomes if o.status == "typed")
    categories = collections.Counter(category(o.case) for o in outcomes)
    slowest = max(outcomes, key=lambda o: o.seconds) if outcomes else None
    findings = [o for o in outcomes if not o.good]
    against_source = sum(1 for o in outcomes if o.status == "ok" and "bit-exact against" in o.message)
    lines = [
        "# Fuzz run (frontends + compile pipeline)",
        "",
        f"Command: `{command}`",
        f"Date: {datetime.date.today().isoformat()}, machine: {platform.machine()} {platform.system()}, "
        f"Python {platform.python_version()}",
        "",
        "Every case is a seeded mutation of a valid QDQ or QONNX model (or of its bytes, its path, or the compile "
        "options), compiled with `nn2aie.api.compile_path` in a worker process with a "
        f"{timeout:g} s limit per case. Contract: a successful compile that is bit-exact, or a typed "
        "`Nn2aieError` (not `InternalCheckError`) naming where and why.",
        "",
        "| | count |",
        "|---|---|",
        f"| cases | {len(outcomes)} |",
        f"| successes (compiled and bit-exact) | {status['ok']} |",
        f"| &nbsp;&nbsp;of which also compared with the source framework | {against_source} |",
        f"| typed errors | {status['typed']} |",
    ]
    for cls, n in sorted(typed.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| &nbsp;&nbsp;{cls} | {n} |")
    lines += [
        f"| untyped exceptions | {status['untyped']} |",
        f"| InternalCheckError | {status['internal']} |",
        f"| typed errors with an empty where/reason | {status['bad_message']} |",
        f"| compiled but not bit-exact | {status['mismatch']} |",
        f"| compiled but the checks raised | {status['check_error']} |",
        f"| hangs (> {timeout:g} s) | {status['hang']} |",
        f"| worker crashes | {status['crash']} |",
        f"| wall time | {wall:.1f} s |",
        f"| slowest case | {slowest.seconds:.2f} s (#{slowest.case.index}) |" if slowest else "| slowest case | - |",
        "",
        "Cases per kind of mutation: " + ", ".join(f"{k} {v}" for k, v in sorted(categories.items())) + ".",
        "",
    ]
    if findings:
        lines += ["## Findings", ""] + [f"- {o.line()}" for o in findings] + [""]
    else:
        lines += ["No findings: 0 untyped exceptions, 0 internal-check failures, 0 mismatches, 0 hangs, 0 crashes.",
                  ""]
    lines += [f"Reproduce one case: `python -m tests.fuzz.run --seed {seed} --only N --in-process`.", ""]
    return "\n".join(lines)


def category(case: Case) -> str:
    """The kind of a case: graph, bytes, path, options or valid (the keys of ``CATEGORY_WEIGHTS``)."""
    muts = case.mutations
    if case.options:
        return "options"
    if not muts or muts[0].startswith("unmodified"):
        return "valid"
    head = muts[-1].split(":", 1)[0]
    if head == "path":
        return "path"
    if head in ("truncate", "flip", "overwrite", "insert", "concat", "random", "text"):
        return "bytes"
    return "graph"


def _in_process(case_index: int, seed: int) -> int:
    import tempfile

    from nn2aie.api import compile_path
    from nn2aie.passes.pipeline import CompileOptions

    from .harness import materialize, verify_compiled

    case = make_case(seed, case_index)
    print(case.description)
    with tempfile.TemporaryDirectory() as tmp:
        path = materialize(case, pathlib.Path(tmp))
        compiled = compile_path(path, CompileOptions(**case.options))
        print(verify_compiled(compiled, case.index))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first case index")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per case")
    ap.add_argument("--only", type=int, default=None, help="run only this case index")
    ap.add_argument("--in-process", action="store_true", help="with --only: no worker, show the traceback")
    ap.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="summary file (markdown)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    args = ap.parse_args(argv)

    if args.only is not None and args.in_process:
        return _in_process(args.only, args.seed)
    indices = [args.only] if args.only is not None else list(range(args.start, args.start + args.cases))
    command = "python -m tests.fuzz.run " + " ".join(argv if argv is not None else sys.argv[1:])
    outcomes: list[Outcome] = []
    t0 = time.perf_counter()
    for outcome in run_cases((make_case(args.seed, i) for i in indices), timeout=args.timeout):
        outcomes.append(outcome)
        if args.verbose or not outcome.good:
            print(f"{outcome.seconds:6.2f}s {outcome.line()}", flush=True)
        elif len(outcomes) % 50 == 0:
            print(f"... {len(outcomes)} cases", flush=True)
    wall = time.perf_counter() - t0
    text = summarize(outcomes, args.seed, args.timeout, wall, command.strip())
    print(text)
    findings = [o for o in outcomes if o.status not in GOOD]
    if not args.no_write and args.only is None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        tb_file = args.out.with_name(args.out.stem + "_failures.txt")
        tb_file.write_text("".join(f"{o.line()}\n{o.traceback}\n" for o in findings) or "no findings\n")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())

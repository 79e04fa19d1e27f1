"""The ratchet of issue 11: no module outside ``kernels/<family>/`` and ``kernels/registry.py`` imports a family's
modules, and no family imports another one. Callers reach families through the registry's interface only."""

from __future__ import annotations

import ast
import pathlib

import nn2aie
from nn2aie.kernels.registry import families

SRC = pathlib.Path(nn2aie.__file__).resolve().parent
FAMILIES = sorted(p.name for p in (SRC / "kernels").iterdir() if p.is_dir() and (p / "__init__.py").exists())


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of every module ``source`` (the text of module ``module``) imports, relative ones resolved."""
    out = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def violations(files: dict[str, str]) -> list[str]:
    """``files``: {module name: source}. Every import of a family module from outside that family."""
    bad = []
    for module, source in sorted(files.items()):
        home = module.split(".")[2] if module.startswith("nn2aie.kernels.") and module.count(".") >= 3 else None
        if module == "nn2aie.kernels.registry":
            continue
        for name in sorted(imported_modules(source, module)):
            for fam in FAMILIES:
                if (name == f"nn2aie.kernels.{fam}" or name.startswith(f"nn2aie.kernels.{fam}.")) and home != fam:
                    bad.append(f"{module} imports {name}")
    return bad


def _package_files() -> dict[str, str]:
    out = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path.read_text(encoding="utf-8")
    return out


def test_no_family_module_imported_outside_its_folder_and_the_registry():
    files = _package_files()
    assert len(files) > 50  # the scan sees the package
    assert violations(files) == []


def test_the_check_catches_direct_relative_and_cross_family_imports():
    files = {
        "nn2aie.sim.emulator": "from nn2aie.kernels.dense import semantics\n",
        "nn2aie.passes.memplan": "import nn2aie.kernels.dense.cost as c\n",
        "nn2aie.kernels.eltwise.family": "from ..dense import semantics\n",
        "nn2aie.kernels.dense.family": "from . import cost\nfrom nn2aie.kernels.family import OpFamily\n",
        "nn2aie.kernels.registry": "from nn2aie.kernels.dense.family import DenseFamily\n",
    }
    assert violations(files) == [
        "nn2aie.kernels.eltwise.family imports nn2aie.kernels.dense",
        "nn2aie.kernels.eltwise.family imports nn2aie.kernels.dense.semantics",
        "nn2aie.passes.memplan imports nn2aie.kernels.dense.cost",
        "nn2aie.sim.emulator imports nn2aie.kernels.dense",
        "nn2aie.sim.emulator imports nn2aie.kernels.dense.semantics",
    ]


def test_every_family_folder_is_registered_and_claims_its_kinds():
    assert sorted(f.name for f in families()) == FAMILIES
    kinds = [k for f in families() for k in f.kinds]
    assert len(kinds) == len(set(kinds)) and "dense" in kinds

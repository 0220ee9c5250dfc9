"""The package's layering (tools/layers.py): no import cycle, no upward import."""

from __future__ import annotations

import importlib
import re
import runpy
from pathlib import Path
from typing import Any

LAYERS_TOOL = Path(__file__).resolve().parent.parent / "tools" / "layers.py"


def tool() -> dict[str, Any]:
    return runpy.run_path(str(LAYERS_TOOL))


def test_the_package_has_no_import_cycle_and_no_upward_import() -> None:
    assert tool()["violations"]() == []


def test_the_check_finds_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .high import X\n"
    )
    (package / "high.py").write_text("def f():\n    from . import low\n")
    (package / "loose.py").write_text("")
    problems = tool()["violations"](package, {"low": ["low"], "high": ["", "high"]})
    assert "import cycle: pkg.high <-> pkg.low" in problems
    assert any(p.startswith("pkg.low (low) imports pkg.high (high)") for p in problems)
    assert "pkg.loose: in no layer (add it to LAYERS in tools/layers.py)" in problems


DOCS = Path(__file__).resolve().parent.parent / "docs"


def documented_paths() -> list[str]:
    """Every ``django_durable.x.y`` the documentation names (check ids left out)."""
    found: set[str] = set()
    for page in [*DOCS.glob("*.md"), DOCS.parent / "README.md"]:
        found.update(re.findall(r"django_durable(?:\.[A-Za-z_]\w*)+", page.read_text()))
    return sorted(p for p in found if not re.fullmatch(r"django_durable\.[EW]\d{3}", p))


def test_every_import_path_the_docs_name_works() -> None:
    """Modules moved by the restructure re-export what the documentation names."""
    broken = []
    for path in documented_paths():
        module, _, name = path.rpartition(".")
        try:
            importlib.import_module(path)
            continue
        except ImportError:
            pass
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            broken.append(f"{path}: {exc}")
    assert len(documented_paths()) > 20
    assert broken == []

"""The package's layering (tools/layers.py): no import cycle, no upward import."""

from __future__ import annotations

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

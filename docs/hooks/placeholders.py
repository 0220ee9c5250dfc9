"""MkDocs hook: a stand-in for a page the nav names but another change has not added yet.

``benchmarks.md`` is written with the benchmark suite, separately from the rest of the
documentation. Until it exists, the site gets a short generated page in its place, so
the nav entry and the links to it stay valid and ``mkdocs build --strict`` passes. Once
the real file exists this hook does nothing.
"""

from __future__ import annotations

from typing import Any

from mkdocs.structure.files import File, Files

PENDING = {
    "benchmarks.md": (
        "# Benchmarks\n\n"
        "The measurements (memory per socket, broadcast and wake-up costs) are not "
        "published yet.\n"
    ),
}


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    for path, content in PENDING.items():
        if files.get_file_from_path(path) is None:
            files.append(File.generated(config, path, content=content))
    return files

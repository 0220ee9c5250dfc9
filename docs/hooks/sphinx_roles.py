"""MkDocs hook: render the reST roles of the package's docstrings as plain code.

The docstrings say ``:class:`~django_durable.models.StorageEntry``` (Sphinx style);
mkdocstrings renders that as ``:class:`` followed by inline code. This hook drops the
role and, for ``~`` references, keeps only the last dotted name, as Sphinx would; and
a paragraph ending in ``::`` (which introduces a literal block) ends in one colon.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj|const):<code>(~?)([^<]*)</code>"
)


def _plain(match: re.Match[str]) -> str:
    short, target = match.groups()
    if short:
        target = target.rsplit(".", 1)[-1]
    return f"<code>{target}</code>"


# A reST paragraph that introduces a literal block ends with "::"; show one colon.
LITERAL_INTRO = re.compile(r"::</p>")


def on_page_content(html: str, **kwargs: Any) -> str:
    return LITERAL_INTRO.sub(":</p>", ROLE.sub(_plain, html))

"""MkDocs hook: the docstrings' reStructuredText habits rendered as their authors meant.

The package's docstrings name other objects the Sphinx way (``:class:`~hh_exporter.Exporter```,
``:meth:`flush```) and introduce code blocks with ``::``; mkdocstrings renders both
literally. Each role becomes an optional autorefs cross-reference: a link where the name is
rendered in the API reference (under ``hh_exporter.`` unless given in full), plain code where
it is not. ``text::`` before a code block becomes ``text:``, and a lone ``::`` goes.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):<code>(~?)([\w.]+)</code>")
_LONE_COLONS = re.compile(r"<p>::</p>\s*(?=<pre)")
_COLONS = re.compile(r"::</p>(\s*<pre)")


def _link(match: re.Match[str]) -> str:
    tilde, name = match.group(1), match.group(2)
    name = name.lstrip(".")
    identifier = name if name.startswith("hh_exporter") else f"hh_exporter.{name}"
    title = name.rsplit(".", 1)[-1] if tilde else name
    return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'


def on_page_content(html: str, **kwargs: Any) -> str:
    """Rewrite one page's HTML; autorefs resolves the links once every page is built."""
    html = _LONE_COLONS.sub("", html)
    html = _COLONS.sub(r":</p>\1", html)
    return _ROLE.sub(_link, html)

"""MkDocs hook: the docstrings' Sphinx roles (:class:`X`) as links into the API reference.

The package's docstrings name other objects the Sphinx way (``:class:`~hh_exporter.Exporter```,
``:meth:`flush```); mkdocstrings renders those as the literal role text before the code.
This turns each into an optional autorefs cross-reference: a link where the name is rendered
in the API reference (tried as given, then under ``hh_exporter.``), plain code where it is not.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):<code>(~?)([\w.]+)</code>")


def _link(match: re.Match[str]) -> str:
    tilde, name = match.group(1), match.group(2)
    name = name.lstrip(".")
    identifier = name if name.startswith("hh_exporter") else f"hh_exporter.{name}"
    title = name.rsplit(".", 1)[-1] if tilde else name
    return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'


def on_page_content(html: str, **kwargs: Any) -> str:
    """Rewrite the roles in one page's HTML; autorefs resolves them once every page is built."""
    return _ROLE.sub(_link, html)

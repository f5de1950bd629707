"""The README and the docs site hold together: links resolve, examples parse, the API
reference covers the public names, and the test command installs what the tests need.

`mkdocs build --strict` (in .ci/run) checks the links inside docs/; these check what it
cannot see: the README, which GitHub and PyPI render outside the site, and pyproject.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import hh_exporter
import hh_exporter.streams
import hh_exporter.wire

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_PYTHON = re.compile(r"```python\n(.*?)```", re.S)


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub and MkDocs' toc both make it for our headings."""
    text = re.sub(r"[`*]", "", heading).strip().lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_readme_links_stay_in_the_repository_and_resolve() -> None:
    """Every relative link of the README names a file of the repository, and a heading of it
    where it names one; none leaves the repository (no ../shared)."""
    targets = [t for t in _LINK.findall(README.read_text(encoding="utf-8"))
               if "://" not in t and not t.startswith("mailto:")]
    assert len(targets) >= 10  # the feature list links into the docs
    for target in targets:
        path, _, anchor = target.partition("#")
        file = (ROOT / path).resolve()
        assert file.is_relative_to(ROOT.resolve()), target
        assert file.is_file(), target
        if anchor:
            assert anchor in _anchors(file), target


def test_no_page_links_outside_the_repository() -> None:
    """No docs page reaches outside docs/ by a relative path (the site could not serve it)."""
    for page in PAGES:
        for target in _LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("#"):
                continue
            file = (page.parent / target.partition("#")[0]).resolve()
            assert file.is_relative_to(DOCS.resolve()), f"{page.name}: {target}"


def test_every_python_example_parses() -> None:
    """Each python block of the README and the docs is valid Python (top-level await and
    async with allowed: the examples are bodies of coroutines)."""
    blocks = 0
    for page in [README, *PAGES]:
        for block in _PYTHON.findall(page.read_text(encoding="utf-8")):
            compile(block, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                    dont_inherit=True)
            blocks += 1
    assert blocks >= 8


def test_the_api_reference_renders_every_public_name() -> None:
    """Each name of hh_exporter.__all__ has its ::: entry in docs/api/, through the package
    and not a private module."""
    entries = set()
    for page in (DOCS / "api").glob("*.md"):
        entries |= set(re.findall(r"^::: ([\w.]+)$", page.read_text(encoding="utf-8"), re.M))
    assert not [e for e in entries if any(p.startswith("_") for p in e.split("."))]
    missing = {n for n in hh_exporter.__all__ if n != "__version__"} - {
        e.removeprefix("hh_exporter.") for e in entries}
    assert not missing
    # the rooms' public names too, under their room (hh_exporter.streams.Relay)
    rooms = {f"hh_exporter.{m.__name__.rpartition('.')[2]}.{n}"
             for m in (hh_exporter.streams, hh_exporter.wire) for n in m.__all__}
    assert not rooms - entries - {"hh_exporter.wire.SessionProperties"}  # it is top-level


def test_the_readme_test_command_installs_the_test_group() -> None:
    """The README's test command is one line installing a dependency group that holds the
    test-only pins; the published extras hold none of them."""
    text = README.read_text(encoding="utf-8")
    (command,) = [line for line in text.splitlines() if line.endswith("python -m pytest -q")]
    group = re.search(r"--group (\w+)", command)
    assert group is not None and "pip install -U pip" in command  # --group needs pip 25.1
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    groups = project["dependency-groups"]

    def requirements(name: str) -> list[str]:
        out: list[str] = []
        for item in groups[name]:
            out += requirements(item["include-group"]) if isinstance(item, dict) else [item]
        return out

    installed = " ".join(requirements(group.group(1)))
    for needed in ("pytest", "hypothesis", "honeyhive==", "jsonschema==", "mkdocs=="):
        assert needed in installed
    extras = project["project"]["optional-dependencies"]
    assert not {"test", "dev"} & set(extras)
    assert not [r for reqs in extras.values() for r in reqs if "==" in r or "pytest" in r]

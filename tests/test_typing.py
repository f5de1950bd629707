"""The public API's types: correct use checks clean, mistakes are caught by mypy."""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

HERE = Path(__file__).parent


def _mypy(path: Path) -> tuple[str, int]:
    out, err, status = mypy_api.run(["--strict", "--no-incremental", str(path)])
    return out + err, status


def test_documented_usage_type_checks() -> None:
    """tests/typing/api_usage.py, written as the README shows, passes mypy --strict."""
    out, status = _mypy(HERE / "typing" / "api_usage.py")
    assert status == 0, out


def test_mistakes_are_type_errors(tmp_path: Path) -> None:
    """Unknown fields, wrong types and missing required fields are mypy errors."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import hh_exporter\n"
        "def f(hh: hh_exporter.Exporter) -> None:\n"
        "    hh.log_model_event(model='m', provider='p', messages=[], response={}, colour=1)\n"
        "    hh.log_model_event(model='m', provider='p', messages='x', response={})\n"
        "    hh.log_model_event(model='m', messages=[], response={})\n"
        "    hh.log_event(event_type='banana', event_name='x')\n"
    )
    out, status = _mypy(bad)
    assert status == 1
    for line in (3, 4, 5, 6):
        assert f"bad.py:{line}: error" in out, out

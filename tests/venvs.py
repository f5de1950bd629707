"""Virtual environments for clients that cannot sit beside the test group's pins.

``cached_venv(name, pins)`` builds a venv holding exactly ``pins`` once, under
``$HH_TEST_VENVS`` (default ``~/.cache/hh-exporter/test-venvs``), named by a hash of the
pins and the Python version, and reuses it afterwards: the first run pays the install
(about a minute for traceloop-sdk), later runs nothing. A lock file makes concurrent test
runs wait for one build instead of racing; a build that failed leaves nothing behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["cached_venv"]


def _root() -> Path:
    default = Path.home() / ".cache" / "hh-exporter" / "test-venvs"
    return Path(os.environ.get("HH_TEST_VENVS", default))


def cached_venv(name: str, pins: list[str]) -> Path:
    """The ``python`` of a venv with ``pins`` installed (built on first use)."""
    key = hashlib.sha256("\n".join([sys.version, *sorted(pins)]).encode()).hexdigest()[:12]
    root = _root()
    root.mkdir(parents=True, exist_ok=True)
    home = root / f"{name}-{key}"
    python = home / "bin" / "python"
    ready = home / ".ready"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists():
            return python
        shutil.rmtree(home, ignore_errors=True)  # a build cut short: start again
        subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins],
            capture_output=True, text=True, check=False)
        if pip.returncode != 0:
            shutil.rmtree(home, ignore_errors=True)
            raise RuntimeError(f"building the {name} venv failed:\n{pip.stderr[-3000:]}")
        ready.write_text("\n".join(pins) + "\n")  # written last: the venv is complete
        return python

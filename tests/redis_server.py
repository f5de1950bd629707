"""A real redis-server on a free loopback port, no persistence: for the stream tests and
``benchmarks/streams.py``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisServer"]


class RedisServer:
    """A real redis-server on a free loopback port, no persistence, for one test.

    Deliberately not skipped when redis-server is missing: CI installs it (.ci/run), and a
    test that needs it must fail where it cannot run.
    """

    def __init__(self, tmp: Path | str) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self._exe, self._tmp = exe, tmp
        for _ in range(20):  # a free port can be taken between the probe and the bind
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if self._start(port):
                return
        raise RuntimeError("redis-server did not start")

    def _start(self, port: int) -> bool:
        self.proc = subprocess.Popen(
            [self._exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self._tmp), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):  # up to 5 s for it to answer
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        self.url = f"redis://127.0.0.1:{port}/0"
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        return False

    def restart_on(self, port: int) -> None:
        """A new, empty server on the same port (a restart without persistence)."""
        if not self._start(port):
            raise RuntimeError(f"redis-server did not start again on port {port}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

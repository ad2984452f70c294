"""Run the local Hub as its own process for benchmarks (as users run it: ``hf_spider hub serve``)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, port: int) -> subprocess.Popen:
    """Start ``hf_spider hub serve`` on ``port`` and wait until it accepts connections."""
    proc = subprocess.Popen([sys.executable, "-m", "hf_spider.cli", "hub", "serve", "--root", str(root),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the local Hub did not start")

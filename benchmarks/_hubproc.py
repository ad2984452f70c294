"""Run the local Hub as its own process for benchmarks (as users run it: ``hf_spider hub serve``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
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


def serve_local_hub(name: str) -> tuple[Path, subprocess.Popen]:
    """A fresh work folder ``hf_spider-bench-<name>-*`` and a local Hub serving from it, with ``HF_ENDPOINT``,
    ``HF_HOME``, ``HF_TOKEN`` and ``HF_SPIDER_CACHE`` set for this process (call it before importing
    huggingface_hub)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"hf_spider-bench-{name}-"))
    port = free_port()
    os.environ.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(workdir / "hf_home"), HF_TOKEN="bench",
                      HF_SPIDER_CACHE=str(workdir / "cache"), HF_HUB_DISABLE_PROGRESS_BARS="1",
                      HF_HUB_DISABLE_TELEMETRY="1")
    return workdir, start_server(workdir / "hub", port)

"""Against an endpoint that accepts connections and never answers, every Hub-facing command ends within two
minutes with one line naming the endpoint and the timeout (``--timeout``; default 30 s, ``HF_SPIDER_TIMEOUT``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import FIXTURES


@pytest.fixture(scope="module")
def hanging_endpoint():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])  # read nothing, answer nothing
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


COMMANDS = {
    "scan": ["scan", "--baseline", "org/base"],
    "select": ["select", "--dataset", str(FIXTURES / "digits-mini"), "--baseline", "org/base"],
    "select --models": ["select", "--dataset", str(FIXTURES / "digits-mini"), "--models", "org/a"],
    "embed": ["embed", "org/model", "--baseline", "org/base", "--reference", "org/reference"],
    "verify": ["verify", "org/model", "--baseline", "org/base"],
    "load_ranker": ["select", "--dataset", str(FIXTURES / "digits-mini"), "--method", "spider", "--ranker",
                    "org/ranker"],
}


def test_a_hanging_hub_ends_every_command_with_one_line(hanging_endpoint, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": hanging_endpoint, "HF_HOME": str(tmp_path), "HF_SPIDER_CACHE": str(tmp_path)}

    def run(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hf_spider.cli", "--timeout", "1", *args], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        return time.perf_counter() - start, done

    with ThreadPoolExecutor(len(COMMANDS)) as pool:  # mostly waiting: all at once
        results = dict(zip(COMMANDS, pool.map(run, COMMANDS.values()), strict=True))
    for name, (seconds, done) in results.items():
        lines = done.stderr.strip().splitlines()  # progress bars of the local dataset may come first
        assert done.returncode == 1 and seconds < 120, (name, done.stderr[-2000:])
        assert "Traceback" not in done.stderr and [x for x in lines if x.startswith("Error")] == lines[-1:], (
            name, done.stderr[-2000:])
        assert f"{hanging_endpoint}, timeout 1 s" in lines[-1], (name, lines[-1])


LIBRARY_CALLS = {
    "load_ranker": "from hf_spider.spider.hub import load_ranker; load_ranker('org/ranker')",
    "load_backbone": "from hf_spider.backbones import load_backbone; load_backbone('org/model')",
    "load_task": "from hf_spider.tasks import load_task; load_task('org/dataset')",
}


def test_library_calls_get_the_default_timeout_without_the_cli(hanging_endpoint, tmp_path):
    """No ``configure_timeout`` call and no CLI: the first call to the Hub bounds them (here ``HF_SPIDER_TIMEOUT``)."""
    env = {**os.environ, "HF_ENDPOINT": hanging_endpoint, "HF_HOME": str(tmp_path), "HF_SPIDER_CACHE": str(tmp_path),
           "HF_SPIDER_TIMEOUT": "1"}
    catch = "\ntry:\n    {}\nexcept HfSpiderError as e:\n    print(type(e).__name__)"

    def run(code: str) -> tuple[float, subprocess.CompletedProcess]:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", "from hf_spider.errors import HfSpiderError" + catch.format(code)],
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        return time.perf_counter() - start, done

    with ThreadPoolExecutor(len(LIBRARY_CALLS)) as pool:
        results = dict(zip(LIBRARY_CALLS, pool.map(run, LIBRARY_CALLS.values()), strict=True))
    for name, (seconds, done) in results.items():
        assert done.returncode == 0 and seconds < 120, (name, done.stderr[-2000:])
        assert done.stdout.strip() in ("HubUnavailableError", "ModelLoadError", "DatasetError"), (name, done.stdout)

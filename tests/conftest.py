"""Shared fixtures: one local Hub server per test session, reached by the real clients.

``HF_ENDPOINT``/``HF_HOME``/``HF_TOKEN`` are set here, at import time, because
huggingface_hub, transformers and datasets read them once when first imported.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import uuid
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_SESSION_DIR = Path(tempfile.mkdtemp(prefix="hf_spider-tests-"))
HUB_TOKEN = "hf_spider-test-token"
HUB_PORT = _free_port()
os.environ.update(
    HF_ENDPOINT=f"http://127.0.0.1:{HUB_PORT}",
    HF_HOME=str(_SESSION_DIR / "hf_home"),
    HF_SPIDER_CACHE=str(_SESSION_DIR / "hf_spider_cache"),
    HF_TOKEN=HUB_TOKEN,
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_HUB_ETAG_TIMEOUT="30",
    HF_HUB_DOWNLOAD_TIMEOUT="30",
    TOKENIZERS_PARALLELISM="false",
)

FIXTURES = Path(__file__).parent / "fixtures"


def invoke_cli(*args: str, width: int = 200):
    """Run ``hf_spider ARGS`` in process (typer's ``CliRunner``): ``exit_code``, ``stdout``, ``exception``."""
    from typer.testing import CliRunner

    from hf_spider import cli

    saved, cli.console.width = cli.console.width, width  # tables as on a wide terminal
    try:
        return CliRunner().invoke(cli.app, list(args))
    finally:
        cli.console.width = saved


def safetensors_parameters(path: Path) -> int:
    """How many numbers a safetensors file holds, from its header: a direct count for the prior's tests."""
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118


@pytest.fixture(scope="session")
def hub():
    """The session's local Hub (token-protected writes), at ``HF_ENDPOINT``."""
    from hf_spider.localhub.server import LocalHub

    with LocalHub(_SESSION_DIR / "hub", port=HUB_PORT, token=HUB_TOKEN) as local_hub:
        yield local_hub


@pytest.fixture(scope="session")
def api(hub):
    from huggingface_hub import HfApi

    return HfApi()


@pytest.fixture
def repo_id(request) -> str:
    """A fresh repo id for one test (the repo itself is not created)."""
    name = request.node.name.replace("[", "-").replace("]", "")[:60]
    return f"tests/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of tiny tensors (extra threads only stall on a busy machine)."""
    from hf_spider.spider.predict import one_thread as single_thread

    with single_thread():
        yield

"""The ``hf_spider`` console script: version, help, errors, and ``hub serve`` across a restart."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from hf_spider import __version__
from hf_spider.cli import main

CLI = [sys.executable, "-m", "hf_spider.cli"]


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, **kwargs)


def test_version_and_help():
    assert run_cli("--version").stdout.strip() == f"hf_spider {__version__}"
    out = run_cli("--help").stdout
    assert "hub" in out and "--verbose" in out


def test_errors_are_one_line_and_verbose_shows_the_traceback(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    args = ("hub", "serve", "--root", str(blocker / "sub"), "--port", "0")
    result = run_cli(*args)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "Traceback" not in result.stderr
    verbose = run_cli("--verbose", *args)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
    after = run_cli(*args, "--verbose")  # a global option, accepted after the subcommand too
    assert after.returncode == 1 and "Traceback" in after.stderr


def test_known_errors_print_their_whole_message_as_written(capsys, monkeypatch):
    """No rich markup or emoji codes in a message (a path with brackets, a ':train:' split), and a local path
    that does not exist is named as a missing folder, not parsed as a Hub repo id."""
    monkeypatch.setattr(sys, "argv", ["hf_spider"])
    with pytest.raises(SystemExit) as exit_info:
        main(["select", "--dataset", "./missing/[bold]icons:train:"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == ("Error: no such folder './missing/[bold]icons:train:'; pass a folder of images or parquet files, "
                   "or a Hub dataset id (org/name)")


def test_unexpected_errors_keep_their_traceback(monkeypatch):
    from hf_spider import cli

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "app", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["demo"])


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "server exited"
        try:
            HfApi(endpoint=url).whoami(token="tok")
            return
        except Exception:
            time.sleep(0.2)
    raise TimeoutError(url)


def _serve(root: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "hub", "serve", "--root", str(root), "--port", str(port), "--token", "tok"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def test_hub_serve_survives_a_restart(tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    root = tmp_path / "hubdata"
    proc = _serve(root, port)
    try:
        _wait_for(url, proc)
        api = HfApi(endpoint=url, token="tok")
        api.create_repo("org/kept")
        sha = api.upload_file(path_or_fileobj=b"data", path_in_repo="x.bin", repo_id="org/kept").oid
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    proc = _serve(root, port)
    try:
        _wait_for(url, proc)
        api = HfApi(endpoint=url, token="tok")
        assert api.model_info("org/kept").sha == sha
        path = api.hf_hub_download("org/kept", "x.bin", cache_dir=tmp_path / "cache")
        assert Path(path).read_bytes() == b"data"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_second_server_on_the_same_root_refuses_to_start_and_names_the_first(tmp_path: Path):
    """Two writers on one root each answered 200 to commits, and a restart kept only one writer's."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "hubdata"
    first = _serve(root, port)
    try:
        _wait_for(f"http://127.0.0.1:{port}", first)
        second = subprocess.run([*CLI, "hub", "serve", "--root", str(root), "--port", "0"], capture_output=True,
                                text=True, timeout=60, check=False)
        assert second.returncode == 1
        assert second.stderr.strip() == (f"Error: {root.resolve()} is in use by another Hub server (pid {first.pid}); "
                                         "stop it or choose another root")
    finally:
        first.terminate()
        first.wait(timeout=30)
    from hf_spider.localhub.server import LocalHub

    with LocalHub(root):  # released when the first one stopped
        pass


def test_select_refuses_unknown_names_before_any_work():
    """A misspelt score or method is refused with the closest name before the dataset is even looked at."""
    from typer.testing import CliRunner

    from hf_spider.cli import app

    result = CliRunner().invoke(app, ["select", "--dataset", "./does-not-exist", "--rerank-score", "logmee"])
    assert result.exit_code == 1
    assert str(result.exception).startswith("unknown score 'logmee'; did you mean 'logme'? available: ")
    result = CliRunner().invoke(app, ["select", "--dataset", "./does-not-exist", "--method", "spidr"])
    assert str(result.exception) == ("unknown method 'spidr'; did you mean 'spider'? "
                                     "available: embedder, spider, spider+embedder, forward")


def test_a_missing_baseline_is_named_as_the_baseline(hub):
    from typer.testing import CliRunner

    from hf_spider.cli import app

    digits = Path(__file__).parent / "fixtures" / "digits-mini"
    result = CliRunner().invoke(app, ["select", "--dataset", str(digits), "--baseline", "nobody/missing-baseline"])
    assert result.exit_code == 1
    assert str(result.exception).startswith(
        "the baseline nobody/missing-baseline (the model the embeddings are over) cannot be loaded: "
        "model 'nobody/missing-baseline' not found on the Hub")


def test_an_unreachable_hub_is_one_line_not_a_traceback(capsys, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")  # read at each call, not at import
    with pytest.raises(SystemExit) as exit_info:
        main(["select", "--dataset", "nobody/some-data"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"Error: the Hub at http://127.0.0.1:{port}, timeout 30 s did not answer: reading dataset "
                   "nobody/some-data failed after 4 attempts: ConnectError: [Errno 111] Connection refused")


def test_select_reads_datasets_with_other_column_names(hub, tmp_path):
    """--image-column / --label-column reach the loader: without them the message names the option; with them the
    task loads and select goes on (here to the missing baseline)."""
    import datasets
    from typer.testing import CliRunner

    from hf_spider.cli import app

    digits = datasets.load_dataset(str(Path(__file__).parent / "fixtures" / "digits-mini"), split="train")
    renamed = digits.rename_columns({"image": "picture", "label": "kind"}).cast_column("kind", datasets.Value("int64"))
    (tmp_path / "data").mkdir()
    renamed.to_parquet(str(tmp_path / "data" / "train.parquet"))  # "kind": plain integers, not a ClassLabel
    args = ["select", "--dataset", str(tmp_path), "--baseline", "nobody/missing-baseline"]
    result = CliRunner().invoke(app, args)
    assert "no label column found (pass --label-column, or label_column= in Python)" in str(result.exception)
    result = CliRunner().invoke(app, [*args, "--image-column", "picture", "--label-column", "kind"])
    assert str(result.exception).startswith("the baseline nobody/missing-baseline")

"""The built wheel, installed like any package: ``hf_spider demo`` from an empty folder, offline.

Marked ``wheel`` (out of the default run; ``.ci/run`` runs it in a step of its own): building and installing
take a while. The wheel goes into a fresh venv with ``--no-deps``; its dependencies come from this
environment's site-packages through a ``.pth`` line, so no registry is needed and the checkout is not on the
path (the editable install's own ``.pth`` is not processed there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.wheel
def test_the_built_wheel_runs_the_demo_from_an_empty_folder(tmp_path: Path):
    uv = shutil.which("uv")
    assert uv, "uv builds the wheel (.ci/run installs it)"
    subprocess.run([uv, "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(ROOT)], check=True,
                   capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("hf_spider-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"hf_spider/micro_zoo/ranker/model.safetensors", "hf_spider/micro_zoo/models/resnet18-all-mix/config.json",
            "hf_spider/micro_zoo/embeddings/vit-wesnoth.safetensors",
            "hf_spider/hub/card_templates/embedding_section.md", "hf_spider/demo_data/ground_truth.json"} <= names
    assert not any(n.startswith(("benchmarks/", "tests/")) for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([uv, "pip", "install", "--python", str(python), "--no-deps", "--offline", str(wheel)], check=True,
                   capture_output=True, timeout=600)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    where = subprocess.run([str(python), "-c", "import hf_spider; print(hf_spider.__file__)"], cwd=empty, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(site)  # the wheel's copy, not the checkout
    demo = subprocess.run([str(venv / "bin" / "hf_spider"), "demo", "--json", "--out", "out", "--model",
                           "resnet10-wide-clipart", "--model", "vit-wesnoth"], cwd=empty, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert demo.returncode == 0, demo.stderr
    report = json.loads(demo.stdout)
    assert sorted(r["repo_id"] for r in report["selections"]["embedder"]["ranking"]) == [
        "hf-spider-demo/resnet10-wide-clipart", "hf-spider-demo/vit-wesnoth"]
    assert sorted(p.name for p in (empty / "out").iterdir()) == ["demo.json", "ranking.png", "spider.png"]

"""The Space end to end in a browser: examples/space/app.py served on loopback against the session's local Hub,
driven in headless Chromium (Debian's ``chromium``, through Playwright): upload a labelled zip, rank, read the table.

Marked ``browser`` and left out of the default run (it takes about a minute); ``.ci/run`` runs it in its own step
after installing chromium. The screenshot is kept in ``test-artifacts/space.png``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hf_spider.demo import DEMO_DATA, publish_zoo
from hf_spider.ranking import select_models
from hf_spider.tasks import load_task

pytestmark = pytest.mark.browser

ROOT = Path(__file__).parents[1]
ARTIFACTS = ROOT / "test-artifacts"
ORG = "space-tests"
MODELS = ["resnet10-wide-clipart", "vit-wesnoth", "resnet18-all-mix", "mnv3-glyphs", "convnext-clipart"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def baseline(hub) -> str:
    return publish_zoo(MODELS, org=ORG)[0]


@pytest.fixture(scope="module")
def labelled_zip(tmp_path_factory) -> tuple[Path, Path]:
    """A zip of 6 clipart classes x 12 images (one folder per class, inside a top folder), and that folder."""
    task = load_task(DEMO_DATA / "clipart-objects", split="train")
    root = tmp_path_factory.mktemp("upload") / "my-clipart"
    for c in range(6):
        folder = root / task.class_names[c].replace("/", "-")
        folder.mkdir(parents=True)
        for i in np.flatnonzero(task.labels == c)[:12]:
            task.image(i).save(folder / f"{i}.png")
    archive = root.parent / "my-clipart.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(root.rglob("*.png")):
            z.write(path, path.relative_to(root.parent))
    return archive, root


@pytest.fixture(scope="module")
def space(baseline):
    """The app in a subprocess on a free loopback port, reading the session's HF_ENDPOINT."""
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_SPIDER_BASELINE": baseline, "HF_SPIDER_AUTHOR": ORG,
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "space" / "app.py")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the Space did not start:\n{proc.stdout.read()[-3000:]}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run does)")
def test_space_ranks_an_uploaded_zip_in_the_browser(space, baseline, labelled_zip):
    from playwright.sync_api import expect, sync_playwright

    archive, folder = labelled_zip
    expected = select_models(load_task(folder), baseline=baseline, rerank=3, author=ORG, progress=False)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(space)
        page.locator("#upload input[type=file]").set_input_files(str(archive))
        expect(page.locator("#upload")).to_contain_text("my-clipart.zip", timeout=30_000)
        page.locator("#run").click()
        summary = page.locator("#summary")
        expect(summary).to_contain_text("72 images, 6 classes", timeout=240_000)
        expect(summary).to_contain_text("3 forward passes of candidate models")
        cell = lambda row, col: page.locator(f'#ranking [data-testid="cell-{row}-{col}"]')  # the grid's cells
        expect(page.locator("#ranking [role=row][data-index]")).to_have_count(len(MODELS))
        assert cell(0, 1).inner_text().strip() == "1"
        assert cell(0, 2).inner_text().strip() == expected.candidates[0].repo_id
        assert {cell(i, 2).inner_text().strip() for i in range(len(MODELS))} == {f"{ORG}/{m}" for m in MODELS}
        expect(page.locator("#chart-embedder img")).to_be_visible(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "space.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "space.png").stat().st_size > 10_000

"""End to end in a real browser: `speechlm serve`, Debian's chromium driven by Playwright.

Uploads a cards WAV, clicks Transcribe, and checks that the confidence-coloured
transcript, the WCN picture, the N-best table and the LLM-rescored transcript appear.
A screenshot goes to test-artifacts/serve_demo.png. Chromium: `tools/install_browser.sh`.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-default-apps", "--disable-sync", "--no-first-run",
                 "--disable-features=Translate,OptimizationHints,MediaRouter"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (run tools/install_browser.sh)")


@pytest.fixture(scope="module")
def server(cards, tmp_path_factory):
    pytest.importorskip("gradio")
    pytest.importorskip("uvicorn")
    from speechlm.testing.llm import save_tiny_model

    lm = save_tiny_model(tmp_path_factory.mktemp("lm") / "tiny")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-m", "speechlm.bin.serve", "--port", "0",
                             "--llm", str(lm)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    seen = []
    deadline = time.monotonic() + 90
    url = None
    while time.monotonic() < deadline and url is None:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        match = re.search(r"speechlm serve: (http://127\.0\.0\.1:\d+)", line)
        url = match.group(1) if match else None
    if url is None:
        proc.kill()
        raise AssertionError("server did not start:\n" + "".join(seen[-30:]))
    tmp = Path(line.rsplit("temp dir ", 1)[1].strip())
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert not tmp.exists(), f"the server left its temp dir (uploads) behind: {tmp}"


def test_upload_transcribe_and_see_the_wcn(server, cards):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the playwright pip package is not installed")
    browser_path = chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.goto(server + "/demo/", timeout=30000)
            page.wait_for_selector("#transcribe", timeout=30000)
            page.locator("#audio-in input[type=file]").set_input_files(str(cards / "001.wav"))
            page.locator("#transcribe").click()
            page.wait_for_selector("#transcript .word", timeout=30000)
            words = page.locator("#transcript .word")
            assert " ".join(words.all_inner_texts()) == "ten of clubs"
            posteriors = [float(words.nth(i).get_attribute("data-posterior"))
                          for i in range(words.count())]
            assert all(0.5 < q <= 1.0 for q in posteriors)
            image = page.locator("#wcn img").first
            image.wait_for(timeout=30000)
            page.wait_for_function("el => el.complete && el.naturalWidth > 100",
                                   arg=image.element_handle(), timeout=30000)
            page.wait_for_function(
                "() => document.querySelector('#rescored textarea')?.value.length > 0",
                timeout=30000)
            nbest = page.locator("#nbest").inner_text()
            assert "ten of clubs" in nbest
            page.screenshot(path=str(ARTIFACTS / "serve_demo.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "serve_demo.png").stat().st_size > 10000

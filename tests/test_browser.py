"""The web page in a real browser (Debian's chromium driven by Playwright), against a real server.

A real recitation of 1:2 is the microphone (Chromium's fake capture device playing a wav file).
Screenshots go to test-artifacts/browser/ (desktop 1280x800 and phone 390x844).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium)"),
]


@pytest.fixture(scope="module")
def server():
    from iqrah.acoustic.onnx_model import bundled_model_path

    if not bundled_model_path().is_file():
        pytest.skip("the bundled acoustic model is not in this checkout")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "iqrah.cli", "serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the server did not start")
    yield url
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def microphone_wav(tmp_path_factory, speech) -> Path:
    """1:2 recited by Alafasy, then silence, as a 16-bit wav for the fake microphone."""
    path = tmp_path_factory.mktemp("mic") / "recitation-1-2.wav"
    audio = np.concatenate((np.zeros(8000, np.float32), speech, np.zeros(32000, np.float32)))
    sf.write(path, audio, 16000, subtype="PCM_16")
    return path


def launch(playwright, wav: Path | None = None):
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
            "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream"]
    if wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={wav}%noloop")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)


WATCH_VERDICTS = """
window.verdicts = [];
new MutationObserver((records) => {
  for (const r of records) {
    const el = r.target;
    if (el.classList && el.classList.contains('word')) {
      const v = [...el.classList].find((c) => c.startsWith('v-'));
      if (v) window.verdicts.push([+el.dataset.index, v, performance.now()]);
    }
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['class']});
"""


def choose(page, surah: int, ayah: int):
    page.wait_for_selector("#surah option[value='114']", state="attached")
    page.select_option("#surah", str(surah))
    page.fill("#ayah", str(ayah))
    page.dispatch_event("#ayah", "change")
    page.wait_for_function("document.querySelectorAll('#ayah-text .word').length > 0")


def test_record_live_and_see_words_then_scores(server, microphone_wav):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p, microphone_wav)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.add_init_script(WATCH_VERDICTS)
        page.goto(server)
        choose(page, 1, 2)
        assert page.locator("#ayah-text .word").count() == 4
        assert page.locator("#ayah-text .r-madd").count() >= 1  # tajweed colours on the text
        page.click("#record")
        page.wait_for_function("document.getElementById('connection').dataset.state === 'connected'")
        page.wait_for_timeout(7000)  # the recitation plays into the microphone
        page.click("#record")
        page.wait_for_selector("#scores[data-ready=true]", timeout=30000)
        verdicts = page.evaluate("window.verdicts")
        page.screenshot(path=str(ARTIFACTS / "live-desktop-1280x800.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(ARTIFACTS / "live-phone-390x844.png"), full_page=True)
        browser.close()
    first_seen = []
    for index, _, _ in verdicts:
        if index not in first_seen:
            first_seen.append(index)
    assert first_seen[:4] == sorted(first_seen[:4]) and set(first_seen) == {0, 1, 2, 3}


def test_upload_a_file(server, microphone_wav):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(server)
        choose(page, 1, 2)
        page.set_input_files("#file", str(microphone_wav))
        page.wait_for_selector("#scores[data-ready=true]", timeout=30000)
        classes = page.eval_on_selector_all("#ayah-text .word", "els => els.map(e => e.className)")
        assert all(" v-" in c for c in classes)
        page.screenshot(path=str(ARTIFACTS / "upload-desktop-1280x800.png"), full_page=True)
        browser.close()


def test_unknown_ayah_and_refused_microphone_are_explained(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--use-fake-device-for-media-stream", "--deny-permission-prompts"])
        page = browser.new_page()
        page.goto(server)
        choose(page, 1, 2)
        page.fill("#ayah", "9")
        page.dispatch_event("#ayah", "change")
        page.wait_for_selector("#message:not([hidden])")
        assert "1-7" in page.inner_text("#message")
        page.fill("#ayah", "2")
        page.dispatch_event("#ayah", "change")
        page.click("#record")
        page.wait_for_selector("#message:not([hidden])")
        assert "microphone" in page.inner_text("#message").lower()
        browser.close()

"""The web page in a real browser (Debian's chromium driven by Playwright), against a real server.

A real recitation of 1:2 is the microphone (Chromium's fake capture device playing a wav file).
Screenshots go to test-artifacts/browser/ (desktop 1280x800 and phone 390x844).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, *options: str, env: dict | None = None) -> subprocess.Popen:
    """`iqrah serve` in a process of its own (sessions in memory: no Redis), once /health answers."""
    from iqrah.acoustic.onnx_model import bundled_model_path

    if not bundled_model_path().is_file():
        pytest.skip("the bundled acoustic model is not in this checkout")
    log = Path(tempfile.mkdtemp()) / "server.log"
    with open(log, "wb") as out:  # the server keeps its own copy of the file
        proc = subprocess.Popen([sys.executable, "-m", "iqrah.cli", "serve", "--port", str(port), *options],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    scheme = "https" if "--ssl-certfile" in options else "http"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/health", timeout=1,
                                   context=ssl._create_unverified_context())
            proc.log = log
            return proc
        except OSError:  # not listening yet
            time.sleep(0.1)
    proc.kill()
    proc.wait(10)
    pytest.fail("the server did not start:\n" + log.read_text(errors="replace")[-3000:])


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = start_server(port)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def microphone_wav(tmp_path_factory, speech) -> Path:
    """1:2 recited by Alafasy, then silence, as a 16-bit wav for the fake microphone."""
    path = tmp_path_factory.mktemp("mic") / "recitation-1-2.wav"
    audio = np.concatenate((np.zeros(8000, np.float32), speech, np.zeros(32000, np.float32)))
    sf.write(path, audio, 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def quiet_wav(tmp_path_factory) -> Path:
    """Four seconds of faint room noise: not silent, but nobody speaking."""
    path = tmp_path_factory.mktemp("mic") / "quiet.wav"
    noise = np.random.default_rng(0).normal(0, 0.003, 4 * 16000).astype(np.float32)
    sf.write(path, noise, 16000, subtype="PCM_16")
    return path


def launch(playwright, wav: Path | None = None, extra: tuple[str, ...] = ()):
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
            "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", *extra]
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
      if (v) window.verdicts.push([+el.dataset.index, v, el.classList.contains('tentative'), performance.now()]);
    }
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['class']});
"""

# every WebSocket message the page receives, and every stretch of audio it plays back
WATCH_TRAFFIC = """
window.received = []; window.played = []; window.sockets = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    window.sockets.push(this);
    this.addEventListener('message', (e) => { if (typeof e.data === 'string') window.received.push(JSON.parse(e.data)); });
  }
};
const nativeStart = AudioBufferSourceNode.prototype.start;
AudioBufferSourceNode.prototype.start = function (...args) {
  window.played.push(this.buffer ? this.buffer.duration : 0);
  return nativeStart.apply(this, args);
};
"""


def new_page(browser, viewport=DESKTOP):
    page = browser.new_page(viewport=viewport)
    page.add_init_script(WATCH_VERDICTS)
    page.add_init_script(WATCH_TRAFFIC)
    return page


def choose(page, surah: int, ayah: int):
    page.wait_for_selector("#surah option[value='114']", state="attached")
    page.select_option("#surah", str(surah))
    page.fill("#ayah", str(ayah))
    page.dispatch_event("#ayah", "change")
    wait_js(page, f"document.querySelector('#ayah-text .word') && "
                           f"document.querySelector('.ayah-end').dataset.ayah === '{ayah}'")


def record(page, seconds: float):
    """Press Record, let the fake microphone play for `seconds`, press Stop, wait for the report;
    the report and how long the microphone was open."""
    page.click("#record")
    opened = time.monotonic()
    wait_js(page, "document.getElementById('connection').dataset.state === 'connected'")
    page.wait_for_timeout(seconds * 1000)
    page.click("#record")
    recorded = time.monotonic() - opened
    page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
    return json.loads(page.text_content("#report")), recorded


def wait_js(page, expression: str, timeout: float = 30):
    """Wait until a JavaScript expression is true. (The page's Content-Security-Policy forbids eval,
    which Playwright's wait_for_function needs; page.evaluate is not subject to it.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        page.wait_for_timeout(100)


def screenshot(page, name: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_record_live_then_record_again_in_memorisation_mode(server, microphone_wav):
    """Live verdicts appear word by word as tentative marks, the report confirms them; a second
    take without reloading is scored as well as the first (its microphone graph is new)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p, microphone_wav)
        page = new_page(browser)
        page.goto(server)
        choose(page, 1, 2)
        assert page.locator("#ayah-text .word").count() == 4
        assert page.locator("#ayah-text .r-madd").count() >= 1  # tajweed colours on the text
        assert page.inner_text(".ayah-end") == "\u06dd\u0662"  # the end of ayah 2, Arabic-Indic digit
        first, first_s = record(page, 7)
        verdicts = page.evaluate("window.verdicts")
        screenshot(page, "live-desktop-1280x800")
        # the verdict is a neutral mark: tajweed colours stay on the letters
        marks = page.evaluate("""[...document.querySelectorAll('#ayah-text .word')].map((w) => ({
            border: getComputedStyle(w).borderBottomColor, tentative: w.classList.contains('tentative'),
            letters: w.querySelectorAll('[class^=r-]').length}))""")
        tajweed = page.evaluate("""['r-madd','r-ghunnah','r-qalqalah','r-idgham','r-ikhfaa'].map((c) => {
            const s = document.createElement('span'); s.className = c; document.body.append(s);
            const colour = getComputedStyle(s).color; s.remove(); return colour; })""")
        assert all(m["border"] not in tajweed and not m["tentative"] for m in marks)
        assert sum(m["letters"] for m in marks) >= 1

        page.select_option("#mode", "memorise")
        page.evaluate("window.verdicts = []")
        page.click("#record")
        opened = time.monotonic()
        wait_js(page, "document.getElementById('connection').dataset.state === 'connected'")
        hidden_at_start = page.locator("#ayah-text .word.hidden-word").count()
        page.wait_for_timeout(4000)
        screenshot(page, "live-memorise-while-reciting-desktop-1280x800")
        page.wait_for_timeout(3000)
        page.click("#record")
        second_s = time.monotonic() - opened
        page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
        second = json.loads(page.text_content("#report"))
        second_verdicts = page.evaluate("window.verdicts")
        assert page.locator("#ayah-text .word.hidden-word").count() == 0  # revealed by the report
        screenshot(page, "live-second-take-memorise-desktop-1280x800")
        page.set_viewport_size(PHONE)
        screenshot(page, "live-phone-390x844")
        browser.close()

    first_seen = []
    for index, _, tentative, _ in verdicts:
        if index not in first_seen:
            first_seen.append(index)
            assert tentative  # live verdicts are shown as not yet confirmed
    assert first_seen[:4] == sorted(first_seen[:4]) and set(first_seen) == {0, 1, 2, 3}
    assert hidden_at_start == 4
    assert any(tentative for _, _, tentative, _ in second_verdicts)  # revealed live, word by word
    for report, seconds in ((first, first_s), (second, second_s)):
        assert report["gate"]["path"] == "assessed"
        assert all(w["verdict"] == "correct" for w in report["words"])
        assert report["scores"]["content"] == 100  # counted in words: every word right (it moved with PER)
        assert report["duration_s"] < seconds + 1  # one take's audio, not two interleaved (twice as long)


def test_silence_says_why_and_returns_to_ready(server, quiet_wav):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p, quiet_wav)
        page = new_page(browser)
        page.goto(server)
        choose(page, 1, 2)
        page.click("#record")
        wait_js(page, "document.getElementById('connection').dataset.state === 'connected'")
        page.wait_for_timeout(2500)
        page.click("#record")
        page.wait_for_selector("#message:not([hidden])", timeout=60000)
        wait_js(page, "document.getElementById('connection').dataset.i18n === 'st_idle'")
        message = page.inner_text("#message")
        page.wait_for_timeout(1000)  # nothing replaces it: the microphone stopped with the take
        assert page.inner_text("#message") == message
        assert "no speech found" in message or "silent" in message
        assert page.inner_text("#record") == "Record" and page.is_enabled("#record")
        errors = [m["data"]["code"] for m in page.evaluate("window.received") if m["type"] == "error"]
        assert errors == ["no_speech"]
        assert page.locator("#ayah-text .word[class*=' v-']").count() == 0  # nothing was judged
        screenshot(page, "silence-desktop-1280x800")
        # the next take starts cleanly: it listens, it does not stop at once
        page.click("#record")
        wait_js(page, "document.getElementById('connection').dataset.i18n === 'st_listening'")
        page.wait_for_timeout(800)
        assert page.evaluate("document.getElementById('connection').dataset.i18n") == "st_listening"
        page.click("#record")
        browser.close()


def test_server_restarted_without_redis_the_take_is_sent_again(microphone_wav):
    """The server dies mid-take and comes back empty (sessions in memory): the page is told
    session_not_found, opens a new session, sends the whole recording it holds, gets the report."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = start_server(port)
    try:
        with sync_playwright() as p:
            browser = launch(p, microphone_wav)
            page = new_page(browser, PHONE)
            page.goto(f"http://127.0.0.1:{port}")
            choose(page, 1, 2)
            page.click("#record")
            wait_js(page, "window.verdicts.length > 0")  # a word judged live
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            wait_js(page, "document.getElementById('connection').dataset.state === 'reconnecting'")
            screenshot(page, "reconnecting-while-reciting-phone-390x844")
            proc = start_server(port)
            page.wait_for_timeout(4000)
            page.click("#record")
            page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
            report = json.loads(page.text_content("#report"))
            screenshot(page, "after-restart-phone-390x844")
            received = [(m["type"], m["data"].get("code")) for m in page.evaluate("window.received")]
            browser.close()
    finally:
        proc.kill()
        proc.wait(10)
    assert ("error", "session_not_found") in received
    after = received[received.index(("error", "session_not_found")):]
    assert ("ready", None) in after and after[-1][0] == "final"
    assert report["gate"]["path"] == "assessed"
    assert all(w["verdict"] == "correct" for w in report["words"])


def test_dropped_connection_resumes_the_session(server, microphone_wav):
    """The connection drops mid-take (the server keeps running): the page reconnects, resumes its
    session with the resume token, sends only what the server lacks, and gets the report."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p, microphone_wav)
        page = new_page(browser)
        page.goto(server)
        choose(page, 1, 2)
        page.click("#record")
        opened = time.monotonic()
        wait_js(page, "document.getElementById('connection').dataset.i18n === 'st_listening'")
        page.wait_for_timeout(2500)
        page.evaluate("window.sockets[0].close()")
        wait_js(page, "window.received.filter((m) => m.type === 'ready').length === 2")
        page.wait_for_timeout(4000)
        page.click("#record")
        seconds = time.monotonic() - opened
        page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
        report = json.loads(page.text_content("#report"))
        ready = [m["data"] for m in page.evaluate("window.received") if m["type"] == "ready"]
        browser.close()
    assert ready[1]["session_id"] == ready[0]["session_id"] and ready[1]["resumed_from"]["audio_ms"] > 0
    assert report["gate"]["path"] == "assessed"
    assert all(w["verdict"] == "correct" for w in report["words"])
    assert report["duration_s"] < seconds + 1  # nothing sent twice


def test_upload_explained_practised_and_kept_in_history(server, microphone_wav):
    """Upload 1:2: the scores come with their reasons (praise when nothing is wrong); a word tapped
    can be heard and recorded again on its own; the attempts are kept across a reload."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p, microphone_wav)
        page = new_page(browser, PHONE)
        page.goto(server)
        choose(page, 1, 2)
        page.set_input_files("#file", str(microphone_wav))
        page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
        report = json.loads(page.text_content("#report"))
        classes = page.eval_on_selector_all("#ayah-text .word", "els => els.map(e => e.className)")
        assert all(" v-" in c for c in classes)
        if not report["content_errors"] + report["violations"]:  # a word of praise, not bare numbers
            assert "Excellent" in page.inner_text("#praise")
        elif not report["content_errors"]:
            assert "Every word right" in page.inner_text("#praise")
        for name in ("content", "pronunciation", "tajweed"):
            if report["scores"][name] < 99.5:  # every deduction has its reason
                assert page.locator(f"#why li[data-score={name}]").count() >= 1
        box = page.locator("#scores").bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"]  # in view at the end
        screenshot(page, "upload-phone-390x844")

        # practise word 3 again: hear it, then record it alone
        page.click("#ayah-text .word[data-index='2']")
        page.wait_for_selector("#word-panel:not([hidden])")
        page.evaluate("window.played = []")  # (decoding the upload for playback played it offline)
        page.click("#hear-word")
        wait_js(page, "window.played.length === 1 && window.played[0] > 0.3")
        screenshot(page, "word-panel-phone-390x844")
        page.click("#redo-word")
        wait_js(page, "document.getElementById('connection').dataset.state === 'connected'")
        assert page.is_visible("#practice-banner")
        assert page.locator("#ayah-text .word").count() == 1
        page.wait_for_timeout(2500)
        page.click("#record")
        page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
        assert json.loads(page.text_content("#report"))["spec"] == "1:2:3"  # word 3 of 1:2 alone
        starts = [m for m in page.evaluate("window.received") if m["type"] == "ready"]
        assert len(starts) == 1

        page.reload()
        page.click("#progress summary")
        page.wait_for_selector("#progress-table tr[data-spec='1:2']")
        assert page.inner_text("#progress-table tr[data-spec='1:2'] td:nth-child(2)") == "1"
        assert page.locator("#progress-table tr[data-spec='1:2:3']").count() == 1
        assert page.input_value("#ayah") == "2"  # the page starts where the learner left it
        page.click("#progress-table tr[data-spec='1:2:3']")  # practise that word again
        page.wait_for_selector("#practice-banner:not([hidden])")
        assert page.locator("#ayah-text .word").count() == 1
        page.set_viewport_size(DESKTOP)
        screenshot(page, "progress-desktop-1280x800")
        browser.close()


def test_findings_in_plain_words(server, microphone_wav):
    """A report with mistakes (the server's report of the upload, with findings added): rule names in
    English and Arabic instead of ids, each tajweed deduction beside its finding, quotes that face
    each other, no nested parentheses; then the same in the Arabic interface."""
    import httpx
    from playwright.sync_api import sync_playwright

    report = httpx.post(server + "/api/analyze", data={"ayah": "1:2"}, timeout=60,
                        files={"file": ("1-2.wav", microphone_wav.read_bytes(), "audio/wav")}).json()
    report["violations"] = [{
        "rule": "qalqalah:kubra", "problem": "no_burst", "word_index": 3, "phoneme_index": 15,
        "time_range": [2.0, 2.3], "expected": "burst", "actual": "none", "severity": "major", "confidence": 0.9,
        "feedback": {"en": "Let the letter echo (Echo at a stop (qalqalah kubra)): release it with a clear bounce.",
                     "ar": "أظهر القلقلة (قلقلة كبرى) بنبرة واضحة عند النطق بالحرف الساكن."}}]
    report["content_errors"] = [{
        "kind": "substituted", "word_indices": [1], "expected": "لِلَّهِ", "heard": "لله", "time_range": [0.9, 1.4],
        "feedback": {"en": "«لِلَّهِ» did not sound right: listen and repeat it.",
                     "ar": "لم تُقرأ «لِلَّهِ» كما ينبغي: استمع وأعدها."}}]
    report["words"][1]["verdict"] = "content_error"
    report["scores"].update(content=80.0, tajweed=90.0, overall=85.0)

    def with_mistakes(route):
        route.fulfill(json=report)

    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser)
        page.route("**/api/analyze", with_mistakes)
        page.goto(server)
        choose(page, 1, 2)
        page.set_input_files("#file", str(microphone_wav))
        page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
        shown = page.inner_text("#results")  # the closed JSON report is not shown
        assert not re.search(r"\b(content|madd|qalqalah|ghunnah):[a-z_]+", shown)
        assert "Echo at a stop" in shown and "قلقلة كبرى" in shown and "Wrong word" in shown
        assert "))" not in shown and "((" not in shown
        tajweed = page.inner_text("#why li[data-score=tajweed]")
        assert re.search(r"tajweed −\d", tajweed) and "Echo at a stop" in tajweed
        assert "Wrong word" in page.inner_text("#why li[data-score=content]")
        assert not page.is_visible("#praise")
        # a quoted Quran word is isolated between guillemets that face each other
        quote = page.evaluate("""(() => { const q = document.querySelector('#violations bdi.quote');
            return [q.previousSibling.textContent.slice(-1), q.textContent, q.nextSibling.textContent[0]]; })()""")
        assert quote == ["«", "لِلَّهِ", "»"]
        screenshot(page, "findings-desktop-1280x800")

        page.click("#lang")
        wait_js(page, "document.documentElement.dir === 'rtl'")
        assert page.inner_text("#record") == "تسجيل"
        assert "كما ينبغي" in page.inner_text("#violations")
        screenshot(page, "findings-arabic-desktop-1280x800")
        page.reload()
        page.wait_for_selector("#surah option[value='114']", state="attached")
        assert page.evaluate("document.documentElement.dir") == "rtl"  # remembered
        page.set_viewport_size(PHONE)
        screenshot(page, "arabic-phone-390x844")
        page.click("#lang")
        assert page.evaluate("document.documentElement.dir") == "ltr"
        browser.close()


def test_rejected_upload_and_wrong_ayah_are_explained(server, microphone_wav, tmp_path):
    from playwright.sync_api import sync_playwright

    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are my notes, not a recording")
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser)
        page.goto(server)
        choose(page, 1, 2)
        page.set_input_files("#file", str(not_audio))
        page.wait_for_selector("#message:not([hidden])")
        assert "could not be assessed" in page.inner_text("#message")
        assert "notes.wav" in page.inner_text("#message") or "format" in page.inner_text("#message")
        assert page.evaluate("document.getElementById('connection').dataset.i18n") == "st_idle"
        assert page.is_enabled("#record") and page.is_enabled("#file")
        screenshot(page, "upload-refused-desktop-1280x800")

        choose(page, 112, 1)  # 1:2 recited, 112:1 chosen
        page.set_input_files("#file", str(microphone_wav))
        page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
        assert "does not sound like 112:1 (Al-Ikhlas)" in page.inner_text("#message")
        report = json.loads(page.text_content("#report"))
        # the report may judge a basmala before ayah 1 too: the page then shows it, so that every
        # finding names a word on the page
        shown = page.eval_on_selector_all("#ayah-text .word", "els => els.map((e) => e.textContent)")
        assert shown == [w["text"] for w in report["words"]]
        screenshot(page, "wrong-ayah-desktop-1280x800")
        browser.close()


def test_unknown_ayah_and_refused_microphone_are_explained(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--use-fake-device-for-media-stream", "--deny-permission-prompts"])
        page = browser.new_page()
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(server)
        choose(page, 1, 2)
        assert requests and all(url.startswith(server) for url in requests)  # nothing from elsewhere
        page.fill("#ayah", "9")
        page.dispatch_event("#ayah", "change")
        page.wait_for_selector("#message:not([hidden])")
        assert "1-7" in page.inner_text("#message")
        page.fill("#ayah", "1")
        page.fill("#ayah-end", "4")
        page.dispatch_event("#ayah-end", "change")
        wait_js(page, "document.querySelectorAll('.ayah-end').length === 4")  # a sign after each ayah
        assert page.eval_on_selector_all(".ayah-end", "els => els.map((e) => e.textContent)") == [
            "\u06dd" + digit for digit in "١٢٣٤"]
        page.fill("#ayah-end", "")
        page.fill("#ayah", "2")
        page.dispatch_event("#ayah", "change")
        page.wait_for_selector("#message", state="hidden")
        page.click("#record")
        page.wait_for_selector("#message:not([hidden])")
        assert "microphone" in page.inner_text("#message").lower()
        browser.close()


def test_insecure_origin_says_why_there_is_no_microphone():
    """Served over plain HTTP to other devices, browsers hide the microphone: iqrah serve says so
    when it starts, and the page says so too."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = start_server(port, "--host", "0.0.0.0")
    try:
        assert "microphone only on HTTPS" in proc.log.read_text()
        with sync_playwright() as p:
            browser = launch(p, extra=("--host-resolver-rules=MAP iqrah.test 127.0.0.1",))
            page = browser.new_page()
            page.goto(f"http://iqrah.test:{port}")
            page.wait_for_selector("#notice:not([hidden])")
            assert "HTTPS" in page.inner_text("#notice")
            page.wait_for_selector("#surah option[value='114']", state="attached")
            page.click("#record")
            assert "HTTPS" in page.inner_text("#message")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
def test_https_lets_another_device_record(microphone_wav, tmp_path):
    """iqrah serve --ssl-certfile/--ssl-keyfile: a page opened by a host name (as from a phone)
    is a secure origin, so the microphone is offered and the stream runs over wss."""
    from playwright.sync_api import sync_playwright

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=iqrah.test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port = free_port()
    proc = start_server(port, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    try:
        with sync_playwright() as p:
            browser = launch(p, microphone_wav, extra=("--host-resolver-rules=MAP iqrah.test 127.0.0.1",
                                                       "--ignore-certificate-errors"))
            page = new_page(browser)
            page.goto(f"https://iqrah.test:{port}")
            choose(page, 1, 2)
            assert page.evaluate("window.isSecureContext") and not page.is_visible("#notice")
            page.click("#record")
            wait_js(page, "document.getElementById('connection').dataset.i18n === 'st_listening'")
            page.click("#record")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_server_with_api_keys(microphone_wav):
    """With IQRAH_API_KEYS the page says how to give the key; opened once with ?key= it works."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = start_server(port, env={"IQRAH_API_KEYS": "page-test-key"})
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = new_page(browser)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#message:not([hidden])")
            assert "?key=" in page.inner_text("#message")
            page.goto(f"http://127.0.0.1:{port}/?key=page-test-key")
            choose(page, 1, 2)
            assert "key" not in page.url  # kept in the browser, not left in the address bar
            page.set_input_files("#file", str(microphone_wav))
            page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(20)


def test_the_page_is_light():
    """Under 1 MB without its font, so a phone on a slow line opens it quickly."""
    static = ROOT / "src" / "iqrah" / "server" / "static"
    weight = sum(f.stat().st_size for f in static.iterdir() if f.is_file())
    assert weight < 1_000_000, weight

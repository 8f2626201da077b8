"""The page with a reference reciter: choose one, upload a recitation, read the prosody panel
(apart from the scores), play the reference, and a clear message for a reciter the server lacks.

The server's cache holds Husary's 10:63, measured by ``iqrah.reciters.build_reciter`` from a real
recording; that same recording is the upload (so the learner and the teacher agree closely).
"""

from __future__ import annotations

import json

import pytest

from test_browser import DESKTOP, free_port, launch, new_page, screenshot, start_server, wait_js

RECITER = "Mahmoud Khalil Al-Husary"
RECORDING = "offline-tarteel-test-corpus-v3-ea-husary-010063.opus"


@pytest.fixture(scope="module")
def husary_server(recitations, tmp_path_factory):
    from iqrah.cache import SQLiteCache
    from iqrah.reciters import Recording, build_reciter

    path = recitations / "train" / RECORDING
    if not path.is_file():
        pytest.skip(f"{RECORDING} is not among the recitations")
    folder = tmp_path_factory.mktemp("reciter")
    db = folder / "cache.sqlite3"
    counts = build_reciter(RECITER, [Recording(path, 10, 63)], SQLiteCache(db), jobs=1)
    assert counts["built"] == 1, counts
    port = free_port()
    # no IQRAH_AUDIO_DIR: the reference audio is not on this server (the page says so)
    proc = start_server(port, env={"IQRAH_CACHE": f"sqlite:///{db}", "IQRAH_AUDIO_DIR": ""})
    yield f"http://127.0.0.1:{port}", path
    proc.terminate()
    proc.wait(20)


def choose_ayah(page, surah: int, ayah: int):
    page.wait_for_selector(f"#surah option[value='{surah}']", state="attached")
    page.select_option("#surah", str(surah))
    page.fill("#ayah", str(ayah))
    page.dispatch_event("#ayah", "change")
    wait_js(page, f"!!document.querySelector('.ayah-end[data-ayah=\"{ayah}\"]')")


def test_reference_reciter_prosody_panel_and_unknown_reciter(husary_server):
    from playwright.sync_api import sync_playwright

    server, recording = husary_server
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser, DESKTOP)
        page.goto(server)
        choose_ayah(page, 10, 63)
        assert page.is_hidden("#play-reference")  # no reciter chosen
        page.fill("#reciter", RECITER)
        page.dispatch_event("#reciter", "change")
        assert page.is_visible("#play-reference")

        # the reference audio: this server has none, and says so
        page.click("#play-reference")
        page.wait_for_selector("#message:not([hidden])")
        assert "not on this server" in page.inner_text("#message")

        page.set_input_files("#file", str(recording))
        page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
        report = json.loads(page.text_content("#report"))
        assert report["prosody"]["reciter"] == RECITER  # the page sent the reciter with the upload
        page.wait_for_selector("#prosody-box:not([hidden])")
        panel = page.inner_text("#prosody-box")
        assert "Recite like your teacher" in panel and "not part of the scores" in panel
        assert page.locator("#prosody-scores [data-score]").count() == 3
        assert page.locator("#scores [data-score]").count() == 4  # the scores stay apart, unchanged
        assert not page.locator("#scores [data-score=melody]").count()
        assert page.locator("#prosody-feedback li").count() >= 1
        hinted = page.locator("#ayah-text .word[data-prosody]").count()
        findings = sum(1 for w in report["prosody"]["words"] if w["findings"])
        assert hinted == findings
        screenshot(page, "prosody-desktop-1280x800")
        page.click("#lang")
        wait_js(page, "document.documentElement.dir === 'rtl'")
        assert "اقرأ كما يقرأ شيخك" in page.inner_text("#prosody-box")
        screenshot(page, "prosody-arabic-desktop-1280x800")
        page.click("#lang")

        # a reciter this server has not measured: a clear message, and the page is ready again
        page.fill("#reciter", "Nobody In Particular")
        page.dispatch_event("#reciter", "change")
        page.set_input_files("#file", str(recording))
        wait_js(page, "document.getElementById('message').textContent.includes('Nobody In Particular')")
        assert "no reference" in page.inner_text("#message")
        assert page.evaluate("document.getElementById('connection').dataset.i18n") == "st_idle"
        assert page.is_enabled("#record") and page.is_enabled("#file")
        screenshot(page, "unknown-reciter-desktop-1280x800")

        # remembered like the other choices
        page.reload()
        page.wait_for_selector("#surah option[value='114']", state="attached")
        assert page.input_value("#reciter") == "Nobody In Particular"
        browser.close()


def test_live_stream_with_an_unknown_reciter_says_so(husary_server):
    """The WebSocket start with a reciter the server lacks: unknown_reciter, a clear message, ready."""
    from playwright.sync_api import sync_playwright

    server, recording = husary_server
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser, DESKTOP)
        page.goto(server)
        choose_ayah(page, 10, 63)
        page.fill("#reciter", "Nobody In Particular")
        page.dispatch_event("#reciter", "change")
        page.click("#record")
        wait_js(page, "!document.getElementById('message').hidden")
        assert "Nobody In Particular" in page.inner_text("#message")
        wait_js(page, "document.getElementById('connection').dataset.i18n === 'st_idle'")
        starts = [m for m in page.evaluate("window.received") if m["type"] == "error"]
        assert starts and starts[0]["data"]["code"] == "unknown_reciter"
        assert page.inner_text("#record") == "Record" and page.is_enabled("#record")
        browser.close()


# word events of the stream with a prosody finding planted on word 2, as the page receives them
PLANT_FINDING = """
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  set onmessage(handler) {
    super.onmessage = (event) => {
      const m = JSON.parse(event.data);
      if (m.type === 'word' && m.data.prosody && m.data.index === 1) {
        window.prosodyEvents = (window.prosodyEvents || 0) + 1;
        m.data.prosody.findings = ['rushed'];
        m.data.prosody.feedback = {en: 'You rushed «planted»: give it its time.', ar: 'استعجلت «planted».'};
        return handler({data: JSON.stringify(m)});
      }
      return handler(event);
    };
  }
};
"""


def test_live_prosody_hints_then_the_panel(husary_server, tmp_path):
    """Recited live with Husary as the reference: word events carry prosody, a finding shows as a
    hint on its word (apart from the verdict mark), and the report brings the panel."""
    import numpy as np
    import soundfile as sf
    from playwright.sync_api import sync_playwright

    from iqrah.audio import decode_audio

    server, recording = husary_server
    wav = tmp_path / "husary-10-63.wav"
    audio = decode_audio(recording)
    sf.write(wav, np.concatenate((np.zeros(8000, np.float32), audio, np.zeros(24000, np.float32))), 16000,
             subtype="PCM_16")
    with sync_playwright() as p:
        browser = launch(p, wav)
        page = browser.new_page(viewport=DESKTOP)
        page.add_init_script(PLANT_FINDING)
        page.goto(server)
        choose_ayah(page, 10, 63)
        page.fill("#reciter", RECITER)
        page.dispatch_event("#reciter", "change")
        page.click("#record")
        wait_js(page, "!!document.querySelector('#ayah-text .word[data-prosody=tempo]')", timeout=30)
        hint = page.evaluate("""(() => { const w = document.querySelector('#ayah-text .word[data-prosody]');
            return {index: w.dataset.index, title: w.title, verdict: [...w.classList].some((c) => c.startsWith('v-')),
                    icon: getComputedStyle(w, '::before').content, badge: getComputedStyle(w, '::after').content}; })()""")
        screenshot(page, "prosody-live-hint-desktop-1280x800")
        page.wait_for_timeout(max(0, len(audio) / 16000 - 4) * 1000)
        page.click("#record")
        page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
        page.wait_for_selector("#prosody-box:not([hidden])")
        assert page.locator("#prosody-scores [data-score]").count() == 3
        browser.close()
    assert hint["index"] == "1" and "You rushed" in hint["title"] and hint["verdict"]
    assert hint["icon"] not in ("none", "normal", "") and hint["icon"] != hint["badge"]

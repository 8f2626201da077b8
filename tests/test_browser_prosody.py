"""The page with a reference reciter: choose one from the server's list, upload a recitation, read
the prosody panel (apart from the scores), see the reference's pitch under the learner's, hear a
word in the reference voice, play the reference, and a clear note for a reciter the server lacks.

The server's cache holds Husary's 10:63, measured by ``iqrah.reciters.build_reciter`` from a real
recording; that same recording is the upload (so the learner and the teacher agree closely).
"""

from __future__ import annotations

import json
import math
import shutil

import pytest

from test_browser import CHROMIUM, DESKTOP, PHONE, free_port, launch, new_page, screenshot, start_server, wait_js

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium)")

RECITER = "Mahmoud Khalil Al-Husary"
SLUG = "mahmoud-khalil-al-husary"
RECORDING = "offline-tarteel-test-corpus-v3-ea-husary-010063.opus"


@pytest.fixture(scope="module")
def husary_cache(recitations, tmp_path_factory):
    """A cache holding Husary's 10:63, and the recording it was measured from."""
    from iqrah.cache import SQLiteCache
    from iqrah.reciters import Recording, build_reciter

    path = recitations / "train" / RECORDING
    if not path.is_file():
        pytest.skip(f"{RECORDING} is not among the recitations")
    folder = tmp_path_factory.mktemp("reciter")
    db = folder / "cache.sqlite3"
    counts = build_reciter(RECITER, [Recording(path, 10, 63)], SQLiteCache(db), jobs=1)
    assert counts["built"] == 1, counts
    return db, path


@pytest.fixture(scope="module")
def husary_server(husary_cache):
    db, path = husary_cache
    port = free_port()
    # no IQRAH_AUDIO_DIR: the reference audio is not on this server (the page says so)
    proc = start_server(port, env={"IQRAH_CACHE": f"sqlite:///{db}", "IQRAH_AUDIO_DIR": ""})
    yield f"http://127.0.0.1:{port}", path
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def husary_audio_server(husary_cache, tmp_path_factory):
    """The same cache, and Husary's recording of 10:63 served at /audio (IQRAH_AUDIO_DIR)."""
    db, path = husary_cache
    audio = tmp_path_factory.mktemp("audio")
    (audio / SLUG).mkdir()
    shutil.copy(path, audio / SLUG / "010063.opus")
    port = free_port()
    proc = start_server(port, env={"IQRAH_CACHE": f"sqlite:///{db}", "IQRAH_AUDIO_DIR": str(audio)})
    yield f"http://127.0.0.1:{port}", path
    proc.terminate()
    proc.wait(20)


def choose_ayah(page, surah: int, ayah: int):
    page.wait_for_selector(f"#surah option[value='{surah}']", state="attached")
    page.select_option("#surah", str(surah))
    page.fill("#ayah", str(ayah))
    page.dispatch_event("#ayah", "change")
    wait_js(page, f"!!document.querySelector('.ayah-end[data-ayah=\"{ayah}\"]')")


def choose_reciter(page, name: str):
    page.fill("#reciter", name)
    page.dispatch_event("#reciter", "change")


def test_reference_reciter_prosody_panel_and_unknown_reciter(husary_server):
    from playwright.sync_api import sync_playwright

    server, recording = husary_server
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser, DESKTOP)
        page.goto(server)
        choose_ayah(page, 10, 63)
        assert page.is_hidden("#play-reference")  # no reciter chosen
        choose_reciter(page, RECITER)
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

        # a reciter this server has not measured: the page says so before any take, with the ones it
        # has, and a take goes without the comparison instead of being refused
        choose_reciter(page, "Nobody In Particular")
        page.wait_for_selector("#reciter-note:not([hidden])")
        note = page.inner_text("#reciter-note")
        assert "Nobody In Particular" in note and "not measured for 10:63" in note and RECITER in note
        page.evaluate("delete document.getElementById('scores').dataset.ready")
        page.set_input_files("#file", str(recording))
        page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
        assert json.loads(page.text_content("#report"))["prosody"] is None
        assert page.is_hidden("#message") and page.is_hidden("#prosody-box")
        assert page.evaluate("document.getElementById('connection').dataset.i18n") == "st_done"
        assert page.is_enabled("#record") and page.is_enabled("#file")
        screenshot(page, "unknown-reciter-desktop-1280x800")

        # remembered like the other choices
        page.reload()
        page.wait_for_selector("#surah option[value='114']", state="attached")
        assert page.input_value("#reciter") == "Nobody In Particular"
        browser.close()


def test_live_stream_with_an_unknown_reciter_says_so(husary_server):
    """The WebSocket start with a reciter the server lacks, from a page that could not read the
    server's list of reciters (so it cannot tell beforehand): unknown_reciter, a clear message, ready."""
    from playwright.sync_api import sync_playwright

    server, recording = husary_server
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser, DESKTOP)
        page.route("**/api/reciters**", lambda route: route.abort())
        page.goto(server)
        choose_ayah(page, 10, 63)
        choose_reciter(page, "Nobody In Particular")
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
        choose_reciter(page, RECITER)
        wait_js(page, "document.getElementById('pitch').dataset.scale === 'semitones'")
        assert page.get_attribute("#pitch", "data-reference-points") == "0"  # no word timed yet
        page.click("#record")
        wait_js(page, "!!document.querySelector('#ayah-text .word[data-prosody=tempo]')", timeout=30)
        # drawn live, on the words timed so far
        wait_js(page, "+document.getElementById('pitch').dataset.referencePoints > 20")
        live_points = int(page.get_attribute("#pitch", "data-reference-points"))
        hint = page.evaluate("""(() => { const w = document.querySelector('#ayah-text .word[data-prosody]');
            return {index: w.dataset.index, title: w.title, verdict: [...w.classList].some((c) => c.startsWith('v-')),
                    icon: getComputedStyle(w, '::before').content, badge: getComputedStyle(w, '::after').content}; })()""")
        screenshot(page, "prosody-live-hint-desktop-1280x800")
        page.wait_for_timeout(max(0, len(audio) / 16000 - 4) * 1000)
        page.click("#record")
        page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
        page.wait_for_selector("#prosody-box:not([hidden])")
        assert page.locator("#prosody-scores [data-score]").count() == 3
        assert int(page.get_attribute("#pitch", "data-reference-points")) > live_points  # every word now
        browser.close()
    assert hint["index"] == "1" and "You rushed" in hint["title"] and hint["verdict"]
    assert hint["icon"] not in ("none", "normal", "") and hint["icon"] != hint["badge"]


def test_reciters_offered_for_the_ayah_and_none_elsewhere(husary_server):
    """The reciter field suggests the reciters the server measured for the chosen ayah (Husary for
    10:63); for an ayah none was measured for, the page says so plainly (English and Arabic) and a
    take goes without the reciter instead of being refused."""
    from playwright.sync_api import sync_playwright

    server, recording = husary_server
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser, DESKTOP)
        sent = []
        page.on("request", lambda r: sent.append(r.post_data or "") if r.url.endswith("/api/analyze") else None)
        page.goto(server)
        choose_ayah(page, 10, 63)
        wait_js(page, "document.querySelectorAll('#reciters option').length > 0")
        assert page.eval_on_selector_all("#reciters option", "els => els.map((e) => e.value)") == [RECITER]
        choose_reciter(page, RECITER)
        wait_js(page, "document.getElementById('pitch').dataset.scale === 'semitones'")  # its entry came
        assert page.is_hidden("#reciter-note")

        choose_ayah(page, 10, 64)
        page.wait_for_selector("#reciter-note:not([hidden])")
        note = page.inner_text("#reciter-note")
        assert note.startswith("No reference reciter is measured for 10:64 on this server")
        assert page.locator("#reciters option").count() == 0
        assert page.get_attribute("#reciter", "placeholder") == "none measured for this ayah"
        assert page.get_attribute("#pitch", "data-scale") == "hz"  # no reference to compare with
        assert page.is_visible("#reciter-note")
        screenshot(page, "reciter-none-for-ayah-desktop-1280x800")
        page.click("#lang")
        wait_js(page, "document.documentElement.dir === 'rtl'")
        assert "لا قارئ مرجع مقيس للآية 10:64" in page.inner_text("#reciter-note")
        page.set_viewport_size(PHONE)
        screenshot(page, "reciter-none-for-ayah-arabic-phone-390x844")
        page.set_viewport_size(DESKTOP)
        page.click("#lang")
        wait_js(page, "document.documentElement.dir === 'ltr'")

        # the take goes without the reciter: no refusal (the recording is 10:63, so a mismatch)
        page.set_input_files("#file", str(recording))
        page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
        assert sent and "Al-Husary" not in sent[-1] and 'name="reciter"' not in sent[-1]
        assert "no reference" not in page.inner_text("#message")

        # back to 10:63: the note goes, the reciter is offered again
        choose_ayah(page, 10, 63)
        wait_js(page, "document.querySelectorAll('#reciters option').length === 1")
        page.wait_for_selector("#reciter-note", state="hidden")
        browser.close()


# view.referenceCurve, tried in the page: key-invariant and word by word
CURVE_CHECK = """(async () => {
  const view = await import('/static/view.js');
  const f0 = [null, 100, 110, 120, 130, null, 140, 150, 160, 170, 180];
  const pitch = {start_s: 0, step_s: 0.1, f0};
  const octave = {start_s: 0, step_s: 0.1, f0: f0.map((f) => f && 2 * f)};
  const pairs = [[[0.1, 0.4], [2.0, 2.6]], [[0.5, 1.0], [3.0, 3.2]]];
  return {low: view.referenceCurve(pitch, pairs), high: view.referenceCurve(octave, pairs)};
})()"""


def test_reference_pitch_under_the_learners_word_by_word(husary_server):
    """After an upload of 10:63 with Husary chosen, the pitch view draws his contour (semitones
    around his median) on the learner's words: every voiced frame of his words, none before a word
    is timed; a legend says whose line is whose; nothing clipped at phone size. No reference audio
    on this server: no button to hear a word from him."""
    from playwright.sync_api import sync_playwright

    server, recording = husary_server
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser, DESKTOP)
        page.goto(server)
        choose_ayah(page, 10, 63)
        assert page.get_attribute("#pitch", "data-scale") == "hz" and page.is_hidden("#pitch-legend")
        choose_reciter(page, RECITER)
        wait_js(page, "document.getElementById('pitch').dataset.scale === 'semitones'")
        assert page.get_attribute("#pitch", "data-reference-points") == "0"  # no word of the learner yet
        entry = page.evaluate(f"fetch('/api/reciters/{SLUG}/10/63').then((r) => r.json())")

        page.set_input_files("#file", str(recording))
        page.wait_for_selector("#scores[data-ready=true]", timeout=60000)
        report = json.loads(page.text_content("#report"))
        timed = {w["index"] for w in report["words"] if w["start"] is not None}
        pitch = entry["pitch"]
        expected = 0
        for index, start, end in entry["words"]:
            if index in timed:
                first = max(0, math.ceil((start - pitch["start_s"]) / pitch["step_s"] - 1e-9))
                last = min(len(pitch["f0"]) - 1, math.floor((end - pitch["start_s"]) / pitch["step_s"] + 1e-9))
                expected += sum(1 for f in pitch["f0"][first:last + 1] if f)
        wait_js(page, "+document.getElementById('pitch').dataset.referencePoints > 0")
        drawn = int(page.get_attribute("#pitch", "data-reference-points"))
        assert expected > 100 and abs(drawn - expected) <= len(entry["words"]), (drawn, expected)
        assert int(page.get_attribute("#pitch", "data-learner-points")) > 30
        legend = page.inner_text("#pitch-legend")
        assert "you" in legend and RECITER in legend
        assert "Semitones" in page.inner_text("#pitch-axes") and "whole take" in page.inner_text("#pitch-axes")
        screenshot(page, "reference-pitch-desktop-1280x800")

        curves = page.evaluate(CURVE_CHECK)
        assert curves["low"] == curves["high"]  # an octave higher: the same curve
        first_word = curves["low"][0]  # frames 1-4 (0.1-0.4 s) spread over 2.0-2.6 s
        assert [round(t, 3) for t, _ in first_word] == [2.0, 2.2, 2.4, 2.6]
        assert first_word[0][1] == pytest.approx(12 * math.log2(100 / 140))  # 140 Hz: the median
        assert [t for t, st in curves["low"][1] if st is None] == [3.0]  # unvoiced: a break

        # no reference audio on this server: no word in his voice
        page.click("#ayah-text .word[data-index='1']")
        page.wait_for_selector("#word-panel:not([hidden])")
        assert page.is_hidden("#hear-reference")

        page.set_viewport_size(PHONE)
        page.evaluate("document.getElementById('pitch-box').open = true")
        wait_js(page, "+document.getElementById('pitch').dataset.referencePoints > 0")
        assert abs(int(page.get_attribute("#pitch", "data-reference-points")) - expected) <= len(entry["words"])
        for selector in ("#pitch", "#pitch-legend", "#pitch-axes"):
            box = page.locator(selector).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (selector, box)
        page.locator("#pitch-box").scroll_into_view_if_needed()
        screenshot(page, "reference-pitch-phone-390x844")
        page.click("#lang")
        wait_js(page, "document.documentElement.dir === 'rtl'")
        assert "أنت" in page.inner_text("#pitch-legend")
        screenshot(page, "reference-pitch-arabic-phone-390x844")
        page.click("#lang")
        browser.close()


# every media element the page plays, and where it was when it paused
WATCH_MEDIA = """
window.media = []; window.pauses = []; window.starts = [];
const nativePlay = HTMLMediaElement.prototype.play;
HTMLMediaElement.prototype.play = function (...args) {
  if (!window.media.includes(this)) {
    window.media.push(this);
    this.addEventListener('playing', () => window.starts.push(this.currentTime));
    this.addEventListener('pause', () => window.pauses.push(this.currentTime));
  }
  return nativePlay.apply(this, args);
};
"""


def test_hear_a_word_from_the_reference_reciter(husary_audio_server):
    """With Husary's recording served at /audio, a word tapped after the take can be heard in his
    voice: the recording plays from that word's start and pauses at its end."""
    from playwright.sync_api import sync_playwright

    server, recording = husary_audio_server
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser, PHONE)
        page.add_init_script(WATCH_MEDIA)
        page.goto(server)
        choose_ayah(page, 10, 63)
        choose_reciter(page, RECITER)
        wait_js(page, "document.getElementById('pitch').dataset.scale === 'semitones'")
        entry = page.evaluate(f"fetch('/api/reciters/{SLUG}/10/63').then((r) => r.json())")
        assert entry["audio_url"] == f"/audio/{SLUG}/10/63"
        page.set_input_files("#file", str(recording))
        page.wait_for_selector("#scores[data-ready=true]", timeout=60000)

        _, start, end = next(w for w in entry["words"] if w[0] == 2)
        page.click("#ayah-text .word[data-index='2']")
        page.wait_for_selector("#hear-reference:not([hidden])")
        assert RECITER in page.inner_text("#hear-reference")
        screenshot(page, "hear-word-from-reference-phone-390x844")
        page.click("#hear-reference")
        wait_js(page, "window.pauses.length > 0", timeout=20)
        media = page.evaluate("window.media.map((m) => m.src)")
        began, paused = page.evaluate("window.starts[0]"), page.evaluate("window.pauses[0]")
        assert len(media) == 1 and media[0].endswith(entry["audio_url"])
        assert start - 0.05 <= began <= start + 0.25, (began, start)  # from the word's start
        assert end - 0.03 <= paused <= end + 0.3, (paused, end)  # and no further than its end
        assert page.is_hidden("#message")
        browser.close()

"""StreamingAnalyzer on real recordings fed in 100 ms chunks (skips without the bundled model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iqrah.acoustic.base import AcousticModel
from iqrah.audio import SAMPLE_RATE, AudioError


@pytest.fixture(scope="module")
def model():
    from iqrah.acoustic.onnx_model import OnnxAcousticModel, bundled_model_path

    if not bundled_model_path().is_file():
        pytest.skip("the bundled acoustic model is not in this checkout")
    return OnnxAcousticModel()


def stream(model, audio, spec, chunk=1600):
    from iqrah.stream import StreamingAnalyzer

    analyzer = StreamingAnalyzer(spec, model=model)
    live = []
    for i in range(0, audio.size, chunk):
        live += analyzer.feed(audio[i:i + chunk])
    return analyzer, live, analyzer.finish()


def test_words_arrive_while_reciting_and_final_equals_analyze(model, recitations, monkeypatch):
    import iqrah.analyze
    from iqrah.analyze import analyze
    from iqrah.audio import decode_audio

    audio = decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-002255.opus")[: 20 * SAMPLE_RATE]
    audio = np.concatenate((audio, np.zeros(SAMPLE_RATE, np.float32)))
    vad_runs = []
    whole_recording_vad = iqrah.analyze.speech_segments
    monkeypatch.setattr(iqrah.analyze, "speech_segments", lambda samples: vad_runs.append(1) or whole_recording_vad(samples))
    analyzer, live, final = stream(model, audio, "2:255")
    assert vad_runs == []  # the final report took the stream's own VAD segments
    words = [e for e in live if e.type == "word" and e.data["revision"] == 0]
    assert len(words) >= 8, "words must be confirmed during the stream, not only at the end"
    assert [e.data["index"] for e in words] == sorted(e.data["index"] for e in words)
    for event in words:  # each word is sent soon after it is said
        assert event.audio_ms / 1000 - event.data["end"] < 3.0
    partials = [e.audio_ms for e in live if e.type == "partial"]
    assert max(np.diff(partials)) <= 1000
    report = final[-1]
    assert report.type == "final"
    offline = analyze(analyzer.audio(), "2:255", analyzer.settings, model)
    assert report.data == offline.model_dump(mode="json") | {"timings_ms": report.data["timings_ms"]}


def test_a_busy_server_stops_the_streams_vad_and_the_final_report_runs_it(model, recitations, monkeypatch):
    """A server that steps less often (busy) spares each stream's VAD once the recitation has
    begun; the final report then runs it on the whole recording: the same report."""
    import iqrah.analyze
    from iqrah.analyze import analyze
    from iqrah.audio import decode_audio
    from iqrah.stream import StreamingAnalyzer

    audio = decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-v3-ea-alafasy-085014.opus")
    vad_runs = []
    whole_recording_vad = iqrah.analyze.speech_segments
    monkeypatch.setattr(iqrah.analyze, "speech_segments", lambda samples: vad_runs.append(1) or whole_recording_vad(samples))
    analyzer = StreamingAnalyzer("85:14", model=model)
    for i in range(0, audio.size, 1600):
        analyzer.feed(audio[i:i + 1600], step_s=1.0)
    final = analyzer.finish()[-1]
    assert vad_runs == [1]
    offline = analyze(analyzer.audio(), "85:14", analyzer.settings, model)
    assert final.data == offline.model_dump(mode="json") | {"timings_ms": final.data["timings_ms"]}


def test_the_final_reports_windows_run_while_reciting_and_give_the_same_report(model, recitations, monkeypatch):
    """A 20 s recitation cost its final report three 10 s windows after stop; the windows the
    audio has completed run while the reciter goes on (prepare_final), so one is left, and the
    report is the offline analysis all the same."""
    from iqrah.analyze import analyze
    from iqrah.audio import decode_audio
    from iqrah.stream import StreamingAnalyzer

    audio = decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-002255.opus")[: 20 * SAMPLE_RATE]
    runs = []
    run = model._run
    monkeypatch.setattr(model, "_run", lambda window: runs.append(window.size) or run(window))
    analyzer = StreamingAnalyzer("2:255", model=model)
    prepared = 0
    for i in range(0, audio.size, 1600):
        analyzer.feed(audio[i:i + 1600])
        while analyzer.final_window_due:
            analyzer.prepare_final()
            prepared += 1
    assert prepared == 2  # 0-10 s and 8-18 s of the speech; the last window ends with the audio
    runs.clear()
    report = analyzer.finish()[-1]
    assert len(runs) == 1 and not analyzer.final_window_due
    offline = analyze(analyzer.audio(), "2:255", analyzer.settings, model)
    assert len(runs) == 4  # analyze ran all three windows itself
    assert report.data == offline.model_dump(mode="json") | {"timings_ms": report.data["timings_ms"]}


class Heard(AcousticModel):
    """A model that records the length of every recording it hears."""

    def __init__(self, model):
        self.model, self.calls = model, []
        self.vocab, self.frame_seconds, self.card = model.vocab, model.frame_seconds, model.card

    def log_probs(self, audio):
        self.calls.append(np.asarray(audio).size)
        return self.model.log_probs(audio)


def test_two_passes_live_windows_with_one_model_the_final_report_with_the_other(model, recitations):
    """The live steps hear short windows with the live model; the final report is the offline
    analysis of the whole recording by the final model, the one that hears best."""
    from iqrah.analyze import analyze
    from iqrah.audio import decode_audio
    from iqrah.stream import StreamingAnalyzer

    audio = decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-112001.opus")
    live_model, final_model = Heard(model), Heard(model)
    analyzer = StreamingAnalyzer("112:1", model=live_model, final_model=final_model)
    for i in range(0, audio.size, 1600):
        analyzer.feed(audio[i:i + 1600])
    assert live_model.calls and max(live_model.calls) < audio.size and not final_model.calls
    report = analyzer.finish()[-1]
    assert final_model.calls == [audio.size]  # the whole recording, once
    offline = analyze(analyzer.audio(), "112:1", analyzer.settings, model)
    assert report.data == offline.model_dump(mode="json") | {"timings_ms": report.data["timings_ms"]}


def test_flush_confirms_the_words_left_when_the_audio_ends(model, recitations):
    """After the last chunk, flush() sends the words still waiting for what follows them."""
    from iqrah.audio import decode_audio
    from iqrah.stream import StreamingAnalyzer

    audio = decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-112001.opus")
    analyzer = StreamingAnalyzer("112:1", model=model)
    live = []
    for i in range(0, audio.size, 1600):
        live += analyzer.feed(audio[i:i + 1600])
    flushed = [e for e in analyzer.flush() if e.type == "word"]
    sent = [e.data["index"] for e in live + flushed if e.type == "word" and e.data["revision"] == 0]
    assert sorted(sent) == list(range(len(analyzer.reference.words)))
    final = analyzer.finish()
    assert final[-1].type == "final"


def test_nan_audio_is_refused(model):
    from iqrah.stream import StreamingAnalyzer

    analyzer = StreamingAnalyzer("1:2", model=model)
    with pytest.raises(AudioError, match="NaN"):
        analyzer.feed(np.array([0.0, np.nan], np.float32))


def test_a_stop_after_the_last_word_confirms_it_live(model, recitations):
    """The ayah's last word followed by silence is sent while streaming, not only by finish()."""
    from iqrah.audio import decode_audio

    audio = decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-112001.opus")
    audio = np.concatenate((audio, np.zeros(SAMPLE_RATE, np.float32)))
    analyzer, live, _ = stream(model, audio, "112:1")
    sent = {e.data["index"] for e in live if e.type == "word"}
    assert sent == set(range(len(analyzer.reference.words)))


def test_a_voice_silero_misses_still_gets_live_words(model, recitations):
    """RetaSy 001: Silero never hears speech in it; the stream finds the voice by its energy and
    confirms words while it plays, and the final report is a report, not "no speech"."""
    from iqrah.audio import decode_audio

    audio = decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-retasy-001.opus")
    analyzer, live, final = stream(model, audio, "1:1")
    assert [e for e in live if e.type == "word"], "words must be sent while the audio plays"
    assert final[-1].type == "final"


def test_a_word_the_alignment_cannot_follow_past_is_confirmed_live(model, recitations):
    """RetaSy 009 (111:3): after نَارًا the model does not hear ذَاتَ as written, so the partial
    alignment stays in نَارًا until the audio ends. The free decoding hears the learner go on,
    so the word is confirmed while they recite, not by flush()."""
    from iqrah.audio import decode_audio

    audio = decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-retasy-009.opus")
    analyzer, live, _ = stream(model, audio, "111:3")
    sent_at = {e.data["index"]: e.audio_ms for e in live if e.type == "word" and e.data["revision"] == 0}
    assert 1 in sent_at and sent_at[1] < 3500, sent_at  # the word ends at about 2.5 s; audio at 4.2 s
    # nothing of ذَاتَ is placed either: it is sent live too, between the two words around it
    assert 2 in sent_at and sent_at[2] < 4000, sent_at
    sent = {e.data["index"]: e.data for e in live if e.type == "word"}
    assert sent[1]["end"] <= sent[2]["start"] < sent[2]["end"] < 4.0


def test_a_pause_costs_no_model_runs_once_it_is_seen(model, recitations):
    """After the step that finds the reciter silent, quiet audio is not aligned again: the model
    does not run through a long pause, and the words, confirmed at its start, stay as sent."""
    from iqrah.audio import decode_audio

    audio = decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-112001.opus")
    rng = np.random.default_rng(0)
    pause = (1e-4 * rng.standard_normal(4 * SAMPLE_RATE)).astype(np.float32)
    analyzer, live, _ = stream(model, np.concatenate((audio, pause)), "112:1")
    assert {e.data["index"] for e in live if e.type == "word"} == set(range(len(analyzer.reference.words)))
    assert analyzer.quiet_steps >= 10  # of about 14 steps in the 4 s pause
    assert [e for e in live if e.type == "partial"][-1].audio_ms >= (audio.size + 3 * SAMPLE_RATE) // 16


def test_the_voice_judged_so_far_survives_a_reconnect(model, recitations):
    """The stream judges each word against how the reciter's words have fitted so far
    (``fit_line``) and counts with the madds it has heard (pace); a stream restored from its
    snapshot keeps both."""
    from iqrah.audio import decode_audio
    from iqrah.stream import StreamingAnalyzer

    audio = decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-002255.opus")[: 12 * SAMPLE_RATE]
    analyzer = StreamingAnalyzer("2:255", model=model)
    for i in range(0, audio.size, 1600):
        analyzer.feed(audio[i:i + 1600])
    assert len(analyzer._fits) >= 5 and set(analyzer._fits) <= set(analyzer.words)
    restored = StreamingAnalyzer("2:255", model=model)
    restored.restore(json.loads(json.dumps(analyzer.snapshot())), analyzer.audio())  # as Redis keeps it
    assert restored._fits == analyzer._fits
    assert analyzer._held and restored._held == analyzer._held

"""Prosody against a reference reciter on a real recording with planted changes: the recording
itself is the reference; stretched 1.25x (pitch kept) it is slow on most words, shifted up 3
semitones it gets no melody finding (key invariance), flattened it scores lower on melody; and a
stream's live prosody is the final report's where the word spans agree."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from iqrah.assess.prosody import Contour, compare, dtw_distance, npvi, spans_of

FILE = "train/offline-tarteel-test-corpus-v3-ea-husary-010063.opus"
SPEC = "10:63"


def test_measures_on_known_inputs():
    assert npvi([1, 1, 1, 1]) == 0 and npvi([1, 3]) == pytest.approx(100)
    assert npvi([0.2]) is None
    a = np.array([0.0, 1, 2, 3, 2, 1, 0])
    assert dtw_distance(a, a) == 0
    assert dtw_distance(a, np.repeat(a, 2)) == pytest.approx(0, abs=1e-9)  # the same shape, slower
    assert dtw_distance(a, -a) > 1
    assert np.isnan(dtw_distance(a, np.zeros(0)))
    contour = Contour(0.0, 0.02, np.array([100.0, np.nan, 200.0, 400.0]))
    assert contour.key_hz(0.02) == 100 and contour.key_hz(1.0) == 200
    assert contour.semitones(0, 1, 200.0).tolist() == pytest.approx([-12, 0, 12])


@pytest.fixture(scope="module")
def husary(recitations):
    from iqrah.acoustic.onnx_model import OnnxAcousticModel, bundled_model_path
    from iqrah.audio import decode_audio
    from iqrah.reciters import measure

    if not bundled_model_path().is_file():
        pytest.skip("the bundled acoustic model is not in this checkout")
    model = OnnxAcousticModel(threads=1)
    audio = decode_audio(recitations / FILE)
    return model, audio, measure(audio, SPEC, model)


def _prosody(model, audio, entry, contour_change=None):
    from iqrah.analyze import analyze
    from iqrah.audio.pitch import estimate_pitch

    report = analyze(audio, SPEC, model=model)
    contour = Contour.from_pitch(estimate_pitch(audio))
    if contour_change:
        contour = contour_change(contour)
    return compare("husary", *spans_of(report.words), contour, entry)


def test_planted_tempo_key_and_melody_changes(husary):
    import soxr

    from iqrah.evaluate.tsm import time_stretch

    model, audio, entry = husary
    same = _prosody(model, audio, entry)
    assert not any(w.findings for w in same.words) and same.scores["overall"] > 95
    slow = _prosody(model, time_stretch(audio, 1.25), entry)
    assert sum("slow" in w.findings for w in slow.words) >= 0.75 * len(slow.words)
    assert 1.15 < slow.tempo_ratio < 1.35 and slow.scores["tempo"] < same.scores["tempo"] - 25
    factor = 2 ** (3 / 12)
    higher = soxr.resample(time_stretch(audio, factor), 16000 * factor, 16000).astype(np.float32)
    shifted = _prosody(model, higher, entry)
    assert not any(f.endswith(("rises", "falls")) for w in shifted.words for f in w.findings)
    assert shifted.scores["melody"] > 90

    def flatten(contour):
        f0 = contour.f0.copy()
        voiced = np.isfinite(f0)
        f0[voiced] = np.median(f0[voiced])
        return replace(contour, f0=f0)

    flat = _prosody(model, audio, entry, flatten)
    assert flat.scores["melody"] < same.scores["melody"] - 10


def test_report_and_stream_carry_the_same_prosody(husary):
    from iqrah.analyze import analyze
    from iqrah.stream import StreamingAnalyzer

    model, audio, entry = husary
    report = analyze(audio, SPEC, model=model, reciter=("Husary", entry))
    assert report.prosody.reciter == "Husary" and report.prosody.scores.overall > 95
    assert [w.index for w in report.prosody.words] == [0, 1, 2, 3]
    assert analyze(audio, SPEC, model=model).prosody is None  # only when a reciter is chosen
    stream = StreamingAnalyzer(SPEC, model=model, reciter=("Husary", entry))
    events = []
    for i in range(0, audio.size, 1600):
        events += stream.feed(audio[i:i + 1600])
    events += stream.flush() + stream.finish()
    final = events[-1].data
    assert final["prosody"] == report.prosody.model_dump(mode="json")
    last_sent = {}
    for e in events:
        if e.type == "word":
            last_sent[e.data["index"]] = e.data
    by_index = {w["index"]: w for w in final["prosody"]["words"]}
    same_span = 0
    for index, word in last_sent.items():
        final_word = next(w for w in final["words"] if w["index"] == index)
        assert word["prosody"]["reciter"] == "Husary"
        # the last word event of a word carries the final report's span (finish re-sends words it moved)
        assert abs(word["start"] - final_word["start"]) <= 0.04 and abs(word["end"] - final_word["end"]) <= 0.04
        if (word["start"], word["end"]) == (final_word["start"], final_word["end"]):  # same span: same numbers
            assert {k: word["prosody"][k] for k in by_index[index]} == by_index[index]
            same_span += 1
        assert word["prosody"]["findings"] == by_index[index]["findings"]
    assert same_span >= 1

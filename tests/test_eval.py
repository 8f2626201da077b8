"""``iqrah eval accuracy`` on a small manifest of its own (any folder, paths relative to it)."""

from __future__ import annotations

import csv
import json
import os

import pytest
from typer.testing import CliRunner

from iqrah.cli import app
from iqrah.evaluate.accuracy import WordTimings, as_segmentation, per_interval
from iqrah.evaluate.manifest import read_manifest


@pytest.fixture(scope="module")
def small_manifest(tmp_path_factory, recitations, manifest):
    """5 dev files (3 Alafasy with word timings, 2 crowd) in a manifest elsewhere."""
    folder = tmp_path_factory.mktemp("other-recordings")
    alafasy = [r for r in manifest if r["split"] == "dev" and "Alafasy" in r["reciter"]
               and r["ayah"] == r["ayah_end"] and r["ayah"] != "1"][:3]
    crowd = [r for r in manifest if r["split"] == "dev" and r["kind"] == "non-expert"][:2]
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(manifest[0]))
        writer.writeheader()
        for row in alafasy + crowd:
            writer.writerow({**row, "file": os.path.relpath(recitations / row["file"], folder)})
    return folder / "manifest.csv"


def test_manifest_paths_are_relative_to_the_manifest(small_manifest):
    rows = read_manifest(small_manifest)
    assert len(rows) == 5 and all(r.path.is_file() for r in rows)


def test_eval_accuracy_on_five_files(small_manifest, recitations, tmp_path):
    from iqrah.acoustic.onnx_model import bundled_model_path

    if not bundled_model_path().is_file():
        pytest.skip("the bundled acoustic model is not in this checkout")
    out = tmp_path / "accuracy.json"
    result = CliRunner().invoke(app, [
        "eval", "accuracy", "--manifest", str(small_manifest), "--split", "dev",
        "--timings", str(recitations / "alignments" / "alafasy-word-timings.json"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data) >= {"model", "groups", "overall", "baseline"}
    alafasy = data["groups"]["Mishary Alafasy"]
    assert alafasy["files"] == 3 and 0 <= alafasy["per"] < 0.5
    assert {"word_mae_ms", "within_50ms", "within_100ms", "rtf"} <= set(alafasy)
    assert data["overall"]["files"] == 5
    kinds = data["kinds"]  # pooled by the manifest's kind column
    assert kinds["professional"]["files"] == 3 and kinds["non-expert"]["files"] == 2
    assert kinds["professional"]["per"] == alafasy["per"]
    assert "all non-expert" in result.output and "as a segmentation" in result.output
    assert data["baseline"]["word_mae_ms"] > alafasy["word_mae_ms"]  # alignment beats the baseline
    low, high = alafasy["per_ci95"]  # a file bootstrap around the group's PER, printed too
    assert low <= alafasy["per"] <= high and "95 % interval" in result.output
    assert data["boundary_convention"] == "segmentation"  # quran-align's words follow on without gaps
    assert alafasy["sound_spans"]["boundaries"] == alafasy["boundaries"]
    assert data["model"]["vocabulary"][0] == "<blank>"


def test_eval_mutations_says_what_a_correct_reciter_is_told_per_group(small_manifest, recitations, tmp_path):
    from iqrah.acoustic.onnx_model import bundled_model_path

    if not bundled_model_path().is_file():
        pytest.skip("the bundled acoustic model is not in this checkout")
    timings = small_manifest.parent / "alignments"  # where the command looks, beside the manifest
    if not timings.exists():
        timings.symlink_to(recitations / "alignments", target_is_directory=True)
    out = tmp_path / "mutations.json"
    result = CliRunner().invoke(app, ["eval", "mutations", "--manifest", str(small_manifest), "--split", "dev",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    groups, kinds = data["false_alarms_by_group"], data["false_alarms"]
    assert groups["Mishary Alafasy"]["files"] == 3 and kinds["professional"]["files"] == 3
    assert sum(g["files"] for g in groups.values()) == 5 == sum(k["files"] for k in kinds.values())
    for key in ("ayahs", "violations", "content_errors", "not_this_ayah"):  # the groups split the kinds' totals
        assert sum(g[key] for g in groups.values()) == sum(k[key] for k in kinds.values())
    for tally in (*groups.values(), *kinds.values()):
        assert tally["content_errors_per_ayah"] == round(tally["content_errors"] / tally["ayahs"], 3)
        assert tally["not_this_ayah_share"] == round(tally["not_this_ayah"] / tally["files"], 3)
    assert "recited correctly" in result.output and "all non-expert" in result.output
    planted = data["word_errors"]["tp"] + data["word_errors"]["fn"]
    assert planted >= 6  # a deletion, a repetition and a substitution in each Alafasy file (not ayah 1)


def test_a_pause_counts_with_the_word_before_it_in_a_segmentation():
    nan = float("nan")
    spans = [(0.1, 0.5), (0.5, 0.9), (1.6, 2.0), (1.8, 2.4), (nan, nan), (2.6, 3.0)]
    # the pause after the second word is its own; a restart (overlap) and a word not heard stay
    assert as_segmentation(spans) == [(0.1, 0.5), (0.5, 1.6), (1.6, 2.0), (1.8, 2.4), spans[4], (2.6, 3.0)]


def test_per_interval_brackets_the_pooled_rate_and_narrows_with_more_files():
    few = [(10, 50), (30, 60), (5, 40), (20, 55)]
    low, high = per_interval(few)
    pooled = sum(e for e, _ in few) / sum(n for _, n in few)
    assert low < pooled < high and per_interval(few) == [low, high]  # same seed, same interval
    many_low, many_high = per_interval(few * 25)
    assert high - low > 2 * (many_high - many_low)
    assert per_interval([(3, 30)] * 6) == [0.1, 0.1]  # files that agree leave no doubt


def test_word_timings_say_whether_they_are_a_segmentation(recitations, tmp_path):
    quran_align = WordTimings(recitations / "alignments" / "alafasy-word-timings.json", "alafasy")
    assert quran_align.segmentation
    with_pauses = tmp_path / "timings.json"
    with_pauses.write_text(json.dumps([[[[1, 0, 400], [2, 900, 1300], [3, 1310, 1800]]]]))
    assert not WordTimings(with_pauses, "alafasy").segmentation


def test_eval_refuses_a_missing_manifest(tmp_path):
    result = CliRunner().invoke(app, ["eval", "accuracy", "--manifest", str(tmp_path / "none.csv")])
    assert result.exit_code == 2


def test_time_stretch_any_length_and_factor():
    """WSOLA never reads past the end of the signal (a frame's natural continuation near the end
    once did: a ValueError for some lengths at factor 2^(3/12))."""
    import numpy as np

    from iqrah.evaluate.tsm import time_stretch

    rng = np.random.default_rng(0)
    for n in range(16000, 16400, 7):
        x = rng.standard_normal(n).astype(np.float32)
        for factor in (2 ** (3 / 12), 1.25, 0.8):
            assert time_stretch(x, factor).size == round(n * factor)


def test_a_shortened_madd_is_planted_at_natural_length_in_an_ayah_with_few_natural_madds(recitations):
    """78:36 (Alafasy) holds one natural madd: the planted shortening of its mottasel is measured
    from the reciter's count, so the madd comes out about two counts long (an error), not at
    half its length (Alafasy holds it about 8 counts: half is still a correct long madd)."""
    import random

    from iqrah.acoustic.onnx_model import bundled_model_path
    from iqrah.acoustic.registry import load_model
    from iqrah.analyze import judge
    from iqrah.audio import decode_audio
    from iqrah.config import AnalyzeSettings
    from iqrah.evaluate.mutations import tajweed_mutations
    from iqrah.quran import build_reference

    if not bundled_model_path().is_file():
        pytest.skip("the bundled acoustic model is not in this checkout")
    model = load_model()
    audio = decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-v3-ea-alafasy-078036.opus")
    [shortened] = [m for m in tajweed_mutations(audio, build_reference("78:36"), model, random.Random(0))
                   if m.kind == "shorten_madd"]
    judged, _, _ = judge(shortened.audio, "78:36", AnalyzeSettings(), model)
    assert judged.context.counts(shortened.unit_index) < 3.0
    assert any(f.unit_index == shortened.unit_index and f.problem == "too_short" for f in judged.findings)

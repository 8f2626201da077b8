import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from iqrah.cli import app

runner = CliRunner()


def test_reference_json_has_the_phonemes():
    result = runner.invoke(app, ["reference", "1:2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["phonemes"] == "ءَلحَمدُلِللَااهِرَببِلعَاالَمِۦۦۦۦن"
    assert len(data["words"]) == 4


def test_reference_table_shows_words_and_rules():
    from iqrah.quran.text import ayah_words

    result = runner.invoke(app, ["reference", "1:7"])
    assert result.exit_code == 0
    assert ayah_words(1, 7)[-1] in result.stdout and "madd:lazem(6)" in result.stdout


@pytest.mark.parametrize("spec", ["115:1", "1:8", "0:1", "abc"])
def test_unknown_ayah_is_one_line_and_exit_2(spec):
    proc = subprocess.run([sys.executable, "-m", "iqrah.cli", "reference", spec],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "1-" in lines[0]
    assert proc.stdout == ""


def test_invalid_madd_setting_is_a_clear_error():
    result = runner.invoke(app, ["reference", "1:1", "--madd-aared", "3"])
    assert result.exit_code == 2


def test_audio_lists_speech(recitations):
    path = recitations / "dev" / "offline-tarteel-test-corpus-001002.opus"
    result = runner.invoke(app, ["audio", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert 5.4 < data["duration_s"] < 5.7 and data["speech"]


def test_audio_refuses_a_bad_file(tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio" * 50)
    result = runner.invoke(app, ["audio", str(bad)])
    assert result.exit_code == 2


def test_version_and_help():
    assert runner.invoke(app, ["--version"]).stdout.startswith("iqrah ")
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "reference" in result.stdout

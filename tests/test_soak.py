"""A 2-minute soak in CI (issue 25): 10 clients stream real recitations at real-time pace, over
and over, through a real `iqrah serve`; no errors, every final equal to the undisturbed one, and
the server's memory does not ratchet up (bench/soak.py, which also runs the documented hour)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))


def test_two_minutes_of_ten_streams(recitations):
    from iqrah.acoustic.onnx_model import bundled_model_path

    if not bundled_model_path().is_file():
        pytest.skip("the bundled acoustic model is not in this checkout")
    import soak

    out = soak.main(["--clients", "10", "--minutes", "2", "--recitations", str(recitations)])
    assert out["streams"] >= 40  # each client finishes several recitations
    assert out["errors"] == 0 and out["differing"] == 0
    rss = out["rss_mb"]
    assert rss["end"] - rss["start"] < 200, rss  # steady state, not a ratchet

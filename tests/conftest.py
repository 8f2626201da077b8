"""Shared fixtures: the real recitations beside the project, and a short real speech sample."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def recitations_dir() -> Path | None:
    for candidate in (os.environ.get("IQRAH_RECITATIONS"), ROOT.parent / "shared" / "recitations"):
        if candidate and (Path(candidate) / "manifest.csv").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def recitations() -> Path:
    found = recitations_dir()
    if found is None:
        pytest.skip("real recitations not found: set IQRAH_RECITATIONS or put them in ../shared/recitations")
    return found


@pytest.fixture(scope="session")
def manifest(recitations) -> list[dict]:
    with open(recitations / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def dev_rows(manifest) -> list[dict]:
    return [row for row in manifest if row["split"] == "dev"]


@pytest.fixture(scope="session")
def speech(recitations) -> np.ndarray:
    """Alafasy reciting 1:2 (dev split), 16 kHz mono float32."""
    from iqrah.audio import decode_audio

    return decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-001002.opus")


def pytest_terminal_summary(terminalreporter):
    """Name the folder of browser screenshots in the log, so CI readers can find them."""
    folder = ROOT / "test-artifacts" / "browser"
    if folder.is_dir() and any(folder.iterdir()):
        terminalreporter.write_line(f"browser screenshots saved in {folder}")

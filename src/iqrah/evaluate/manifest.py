"""Manifests of labelled recordings (``manifest.csv``: file, split, reciter, surah, ayah...)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..quran import Reference, build_reference, reference_from_text
from ..quran.text import has_separate_basmala


@dataclass(frozen=True)
class Recording:
    path: Path
    split: str
    reciter: str
    kind: str
    surah: int
    ayah: int
    ayah_end: int
    text: str
    duration_s: float

    @property
    def spec(self) -> str:
        if self.ayah_end != self.ayah:
            return f"{self.surah}:{self.ayah}-{self.ayah_end}"
        return f"{self.surah}:{self.ayah}"

    def references(self) -> list[Reference]:
        """What may have been recited: with and without the basmala where it is optional.

        Raises ValueError when the phonetizer cannot handle the row's text (it fails on some
        partial-ayah segments).
        """
        if self.text:
            try:
                return [reference_from_text(self.text, self.surah, self.ayah)]
            except (IndexError, KeyError, RuntimeError) as exc:
                raise ValueError(f"quran-transcript cannot phonetize the text of {self.path.name}: {exc!r}") from None
        refs = [build_reference(self.spec)]
        if self.ayah == 1 and has_separate_basmala(self.surah):
            refs.append(build_reference(self.spec, include_basmala=True))
        return refs


def read_manifest(path: str | Path, split: str | None = None, reciter: str | None = None) -> list[Recording]:
    """Rows of ``path`` (file paths relative to its folder); ayah-0 rows (basmala only) skipped;
    ``reciter`` keeps the rows whose reciter contains it (case-insensitive)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}")
    recordings = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if split and row.get("split") != split:
                continue
            if reciter and reciter.lower() not in row.get("reciter", "").lower():
                continue
            if int(row["ayah"]) == 0 and not row.get("text"):
                continue
            recordings.append(Recording(
                path=path.parent / row["file"], split=row.get("split", ""),
                reciter=row.get("reciter", "unknown"), kind=row.get("kind", ""),
                surah=int(row["surah"]), ayah=int(row["ayah"]),
                ayah_end=int(row.get("ayah_end") or row["ayah"]), text=row.get("text", ""),
                duration_s=float(row.get("duration_s") or 0)))
    return recordings

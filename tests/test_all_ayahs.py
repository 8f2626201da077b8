"""Every one of the 6,236 ayahs phonetizes into a consistent Reference (two processes)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

from iqrah.quran.text import SURAH_COUNT, ayah_count


def check_surah(surah: int) -> tuple[int, list[str]]:
    from iqrah.quran import build_reference

    problems = []
    for ayah in range(1, ayah_count(surah) + 1):
        try:
            ref = build_reference(f"{surah}:{ayah}")
            assert "".join(u.phonemes for u in ref.units) == ref.phonemes
            assert "".join(w.phonemes for w in ref.words) == ref.phonemes
            assert all(0 <= u.char_span[0] < u.char_span[1] for u in ref.units)
            assert ref.units and all(w.units[0] <= w.units[1] for w in ref.words)
        except Exception as exc:  # collect every failure, not just the first
            problems.append(f"{surah}:{ayah}: {type(exc).__name__}: {exc}")
    return ayah_count(surah), problems


def test_every_ayah_phonetizes():
    # longest surahs first so the two workers finish together
    order = sorted(range(1, SURAH_COUNT + 1), key=lambda s: -ayah_count(s) * (3 if s < 10 else 1))
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(check_surah, order))
    assert sum(n for n, _ in results) == 6236
    problems = [p for _, ps in results for p in ps]
    assert not problems, "\n".join(problems[:20])

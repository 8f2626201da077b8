"""From a Reference and CTC log-probs to the time span of every phoneme unit and word.

Models trained on collapsed targets (runs of one letter merged, ``اااا`` -> ``ا``, as the
bundled model is) emit one token per run, so the reference is collapsed the same way before
alignment and every token remembers the unit it starts in. Lengths (madd, ghunnah) then come
from the aligned durations, not from the number of tokens.

A CTC model fires on a short stretch inside each sound and emits blanks around it, so a word
boundary is placed inside the blank gap between two words: at its middle when the gap is short,
and ``edge_pad_s`` from each word when the gap is a pause.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..acoustic.vocab import Vocabulary
from ..audio.energy import SoundEdges
from ..quran.reference import Reference
from .ctc import Alignment, forced_align
from .restarts import recited_words

EDGE_PAD_S = 0.12  # how far a word extends into a long pause on either side


@dataclass(frozen=True)
class Targets:
    """Token ids to align and, for each token, the reference unit it starts in."""

    ids: np.ndarray
    unit_of_token: np.ndarray

    def word_of_token(self, reference: Reference) -> np.ndarray:
        """The reference word each token belongs to."""
        return np.array([reference.units[u].word_index for u in self.unit_of_token], dtype=np.int64)


@dataclass(frozen=True)
class Timing:
    """Where a unit or word of the reference sounds (seconds), and how sure the model is of it."""

    index: int
    start: float
    end: float
    posterior: float
    gop: float


UnitTiming = WordTiming = Timing


@dataclass(frozen=True)
class ReferenceAlignment:
    units: list[UnitTiming]
    words: list[WordTiming]
    alignment: Alignment
    targets: Targets
    #: (n_units, 2) start and end (s) of each unit's sound (a madd with the short vowel it
    #: lengthens), NaN where unknown; ``held``: the seconds of sound inside (pauses excluded)
    sound: np.ndarray | None = None
    held: np.ndarray | None = None
    #: seconds of the short vowel of units that are one consonant + one short vowel, else NaN
    short_vowel: np.ndarray | None = None
    #: seconds of each unit's first sound (the held letter of a ghunnah or shadda), NaN if unknown
    core: np.ndarray | None = None
    #: word indices in the order they were heard: a word said again after a restart comes twice
    recited: list[int] | None = None
    #: the timing of each entry of ``recited`` (its ``index`` is the position in ``recited``)
    heard: list[Timing] | None = None
    #: the longest silence (s) between each entry of ``recited`` and the one before (NaN: no audio)
    silence_before: np.ndarray | None = None
    #: where the audio aligned sounds and is silent (None when aligned without audio)
    edges: SoundEdges | None = None

    @property
    def restarts(self) -> list[tuple[int, int]]:
        """(restarted at word, after word) for each time the reciter went back."""
        seq = self.recited or []
        return [(b, a) for a, b in zip(seq, seq[1:]) if b <= a]

    def repeats(self) -> list[tuple[list[int], float, float, float]]:
        """For each restart: the words said again, when they were said again (start, end), and
        the longest silence just before the restart (seconds; NaN when aligned without audio)."""
        seq, heard = self.recited or [], self.heard or []
        silence = self.silence_before if self.silence_before is not None else np.full(len(seq), np.nan)
        found = []
        for p in range(1, len(seq)):
            if seq[p] <= seq[p - 1]:
                again = list(range(seq[p], seq[p - 1] + 1))
                end = heard[min(p + len(again) - 1, len(heard) - 1)].end
                found.append((again, heard[p].start, end, float(silence[p])))
        return found


def alignment_targets(reference: Reference, vocab: Vocabulary, collapse: bool = True) -> Targets:
    """The reference as token ids; with ``collapse`` each run of one letter is one token."""
    ids: list[int] = []
    units: list[int] = []
    previous = None
    for unit in reference.units:
        for char in unit.phonemes:
            if collapse and char == previous:
                continue
            ids.append(vocab.encode(char)[0])
            units.append(unit.index)
            previous = char
    return Targets(np.array(ids, dtype=np.int64), np.array(units, dtype=np.int64))


def align_reference(log_probs: np.ndarray, reference: Reference, vocab: Vocabulary,
                    frame_seconds: float, *, collapse: bool = True, offset_s: float = 0.0,
                    edge_pad_s: float = EDGE_PAD_S, audio: np.ndarray | None = None,
                    sample_rate: int = 16_000, first_word: int = 0,
                    partial: bool = False, restarts: bool = True) -> ReferenceAlignment:
    """Align ``reference`` to ``log_probs``; times are seconds from ``offset_s``.

    With ``audio`` (the samples the log-probs were computed from), a word that starts after or
    ends before a pause is extended to where its sound starts or stops (short-time energy),
    instead of by a fixed ``edge_pad_s``. ``first_word`` aligns only the words from there on, and
    ``partial`` lets the audio end before the reference does (a live stream); units and words not
    aligned get NaN times. Raises AlignmentError when the audio is too short for a full alignment.

    With ``restarts`` the reciter may go back and say words again (see ``restarts.py``): a word
    then starts where it was first said and ends where the recitation went on from it (the
    occurrence followed by the next word), and its units are timed in that occurrence.
    """
    targets = alignment_targets(reference, vocab, collapse)
    word_of_token = targets.word_of_token(reference)
    chosen = np.flatnonzero(word_of_token >= first_word)
    ids, chosen_words = targets.ids[chosen], word_of_token[chosen]
    recited = (recited_words(log_probs, ids, chosen_words, vocab.blank, partial=partial)
               if restarts and chosen.size else sorted(set(chosen_words.tolist())))
    # every word as often as it was heard: tokens of each heard word, in the order heard
    token_slices = {w: np.flatnonzero(chosen_words == w) for w in set(recited)}
    heard = np.concatenate([token_slices[w] for w in recited]) if recited else np.zeros(0, np.int64)
    visit_of_token = np.repeat(np.arange(len(recited)), [token_slices[w].size for w in recited])
    heard_result = forced_align(log_probs, ids[heard], blank=vocab.blank, partial=partial)
    heard_reached = heard_result.starts >= 0
    edges = SoundEdges(audio, sample_rate) if audio is not None else None
    onset = _held_onsets(reference, targets.unit_of_token[chosen][heard])
    visits = _word_timings(len(recited), visit_of_token, heard_result, heard_reached, frame_seconds,
                           offset_s, edge_pad_s, edges, onset)
    first_heard: dict[int, int] = {}  # word -> its first position in ``recited``
    for position, word in enumerate(recited):
        first_heard.setdefault(word, position)
    kept = _kept_visits(recited, first_heard)
    silence = np.full(len(recited), np.nan)  # before each occurrence: a stop, or straight on?
    if edges is not None:
        spikes = np.full((len(recited), 2), np.nan)  # first spike start, last spike end (s)
        for visit in range(len(recited)):
            mine = np.flatnonzero((visit_of_token == visit) & heard_reached)
            if mine.size:
                spikes[visit] = heard_result.starts[mine[0]] * frame_seconds, heard_result.ends[mine[-1]] * frame_seconds
        for visit in range(1, len(recited)):
            silence[visit] = edges.longest_silence(spikes[visit - 1, 1], spikes[visit, 0])
    # units and sounds come from the occurrence the recitation went on from
    heard_index = np.full(chosen.size, -1, dtype=np.int64)
    for word, visit in kept.items():
        heard_index[token_slices[word]] = np.flatnonzero(visit_of_token == visit)
    result = _select(heard_result, heard_index)
    reached = result.starts >= 0
    starts = offset_s + result.starts * frame_seconds
    ends = offset_s + result.ends * frame_seconds

    units, previous = [], None
    token_unit = targets.unit_of_token[chosen]
    for unit in reference.units:
        mine = np.flatnonzero((token_unit == unit.index) & reached)
        if mine.size:
            previous = Timing(unit.index, float(starts[mine[0]]), float(ends[mine[-1]]),
                              float(result.mean_posterior[mine].mean()), float(result.gop[mine].mean()))
            units.append(previous)
        elif previous is not None and unit.index == previous.index + 1 and _said(unit, token_unit, reached):
            # its letter merged into the previous unit's token: it sounds where that one ends
            previous = Timing(unit.index, previous.end, previous.end, previous.posterior, previous.gop)
            units.append(previous)
        else:
            units.append(Timing(unit.index, np.nan, np.nan, 0.0, 0.0))

    words = _reference_word_timings(reference, first_heard, kept, visits)
    sound, held, short_vowel, core = _sound_spans(reference, vocab, ids, token_unit, starts,
                                                  ends, reached, edge_pad_s, edges, offset_s)
    return ReferenceAlignment(units=units, words=words, alignment=result, targets=targets, sound=sound,
                              held=held, short_vowel=short_vowel, core=core, recited=recited,
                              heard=visits, silence_before=silence, edges=edges)


PAUSE_REACH_S = 0.25  # a sound runs at most this far into a gap between two spikes
SHORT_VOWELS = frozenset("\u064e\u064f\u0650")  # fatha, damma, kasra
MADD_LETTERS = frozenset("\u0627\u06e6\u06e5")  # alif, small yaa, small waw (the phonetizer's madd letters)


def _sound_spans(reference, vocab, ids, token_unit, starts, ends, reached, pad, edges=None, offset_s=0.0):
    """Where each unit sounds, from the token spikes: each blank gap between two tokens is split
    at its middle, except that sound stops where the audio falls silent (with ``edges``; without
    audio, at most ``pad`` to each side, so a pause does not count), and a madd unit starts with
    the short vowel it lengthens. A CTC spike says where a sound is, not how long,
    but the middles between spikes follow the sound boundaries closely enough to count harakat.
    Returns the (n_units, 2) spans, the seconds of sound inside them, each short syllable's vowel
    length (pace) and each unit's held letter (up to its vowel, silent closures included), NaN
    where unknown."""
    sound = np.full((len(reference.units), 2), np.nan)
    held = np.full(len(reference.units), np.nan)  # seconds of sound inside the span
    short_vowel = np.full(len(reference.units), np.nan)
    core = np.full(len(reference.units), np.nan)
    idx = np.flatnonzero(reached)
    if idx.size == 0:
        return sound, held, short_vowel, core
    s, e = starts[idx], ends[idx]
    gaps = s[1:] - e[:-1]
    # held letters are measured to the gap middles whatever the energy: the closure of a
    # doubled stop (``تت``, ``دد``) is silent, yet it is the letter held
    mid_left = np.concatenate(([s[0] - pad], s[1:] - np.minimum(gaps / 2, pad)))
    mid_right = np.concatenate((e[:-1] + np.minimum(gaps / 2, pad), [e[-1] + pad]))
    chars = [vocab.tokens[ids[k]] for k in idx]
    units = token_unit[idx]
    in_madd = _madd_gaps(chars, units)
    if edges is None:
        left, right = mid_left, mid_right
        madd_left, madd_right = left, right
    else:  # split each gap at its middle, but no sound runs through silence, nor far into a pause
        limit = np.minimum(gaps / 2, PAUSE_REACH_S)  # (reverberation keeps a pause above silence)
        rel_e, rel_s = e - offset_s, s - offset_s
        right = np.array([edges.end_after(t, t + r) for t, r in zip(rel_e[:-1], limit)]
                         + [edges.end_after(rel_e[-1], rel_e[-1] + PAUSE_REACH_S)]) + offset_s
        left = np.array([edges.start_before(rel_s[0], max(0.0, rel_s[0] - PAUSE_REACH_S))]
                        + [edges.start_before(t, t - r) for t, r in zip(rel_s[1:], limit)]) + offset_s
        # inside a madd (a short vowel, then the madd letter that lengthens it) the model fires at
        # the vowel's start and again at its end: all the sound between is the held vowel, as no
        # reciter pauses inside a madd, so the madd is measured through the whole gap
        madd_left, madd_right = left.copy(), right.copy()
        for k in np.flatnonzero(in_madd):
            half = gaps[k] / 2
            madd_right[k] = edges.end_after(rel_e[k], rel_e[k] + half) + offset_s
            madd_left[k + 1] = edges.start_before(rel_s[k + 1], rel_s[k + 1] - half) + offset_s
    hold_left = _hold_starts(reference, units, s, e, mid_left, edges, offset_s)
    for j, unit in enumerate(units):
        lo, hi = left[j], right[j]
        inside = hi - lo
        if j > 0 and in_madd[j - 1]:
            lo = left[j - 1]  # the madd lengthens the vowel before it
            inside = (hi - madd_left[j]) + (madd_right[j - 1] - left[j - 1])
        held[unit] = inside if np.isnan(held[unit]) else held[unit] + inside
        if np.isnan(core[unit]):  # the held letter: up to the spike of the vowel after it
            has_vowel = j + 1 < len(chars) and units[j + 1] == unit and chars[j + 1] in SHORT_VOWELS
            core[unit] = (s[j + 1] if has_vowel else mid_right[j]) - hold_left[j]
            lo = min(lo, hold_left[j])
        sound[unit, 0] = lo if np.isnan(sound[unit, 0]) else min(sound[unit, 0], lo)
        sound[unit, 1] = hi if np.isnan(sound[unit, 1]) else max(sound[unit, 1], hi)
        nxt = chars[j + 1] if j + 1 < len(chars) else None
        if (chars[j] in SHORT_VOWELS and nxt is not None and nxt not in SHORT_VOWELS | MADD_LETTERS
                and len(reference.units[unit].phonemes) == 2):
            short_vowel[unit] = right[j] - left[j]
    return sound, held, short_vowel, core


def _madd_gaps(chars: list[str], units: np.ndarray) -> np.ndarray:
    """For each gap between two consecutive heard tokens: whether it lies inside a madd (a short
    vowel, then the madd letter of the next unit that lengthens it)."""
    return np.array([chars[k] in SHORT_VOWELS and chars[k + 1] in MADD_LETTERS and units[k] != units[k + 1]
                     for k in range(len(chars) - 1)], dtype=bool)


def _hold_starts(reference, units, s, e, mid_left, edges, offset_s) -> np.ndarray:
    """Where each token's held letter starts. A CTC model fires at the release of a held sound
    (a ghunnah, a doubled ``ل`` or ``ر``), so when the gap before the first token of a unit with
    a doubled first letter is all sound (no pause: nasals and liquids are voiced), the letter is
    held from just after the spike before it; otherwise (a silent closure, a pause) from the gap
    middle, at most ``pad`` before its spike."""
    start = mid_left.copy()
    if edges is None:
        return start
    for j in range(1, len(units)):
        unit = reference.units[units[j]]
        if units[j - 1] == units[j] or not _held_first_letter(unit):
            continue
        if edges.longest_silence(e[j - 1] - offset_s, s[j] - offset_s) < PAUSE_S:
            start[j] = min(e[j - 1] + SPIKE_TAIL_S, s[j])
    return start


def _held_first_letter(unit) -> bool:
    """A unit whose first letter is held (doubled in the phonetizer's output: ``للَ``, ``ممممِ``)."""
    return len(unit.phonemes) > 1 and unit.phonemes[1] == unit.phonemes[0]


def _said(unit, token_unit, reached) -> bool:
    """A unit without tokens of its own counts as said once a later unit has been reached."""
    later = np.flatnonzero(token_unit > unit.index)
    return bool(later.size) and bool(reached[later[0]])


PAUSE_S = 0.1  # a stretch of silence this long between two words is a pause
SPIKE_TAIL_S = 0.04  # how long a sound runs on after its spike (about one 40 ms frame)
HOLD_BEFORE, HOLD_CLOSES_PREVIOUS = 1, 2  # kinds of held word onsets (see _held_onsets)


def _held_onsets(reference, token_units) -> np.ndarray:
    """For each token: whether it starts a word with a held first letter. A CTC model fires at the
    release of a held sound, so the hold lies before the spike: a doubled letter (``للَ``,
    ``سسَ``) is held at the start of its word (HOLD_BEFORE); the ghunnah of an idgham (``ممممِ``,
    ``وووَ``, ``يييَ`` from a tanween, noon or meem) is the previous word's last letter held on
    into the next (HOLD_CLOSES_PREVIOUS), as the Uthmani text writes it and as word timing
    references count it."""
    kinds = np.zeros(len(token_units), dtype=np.int8)
    for k, u in enumerate(token_units):
        unit = reference.units[u]
        word = reference.words[unit.word_index]
        if u != word.units[0] or (k and token_units[k - 1] == u):
            continue
        if _held_first_letter(unit):
            nasal_idgham = any(r.family == "ghunnah" and r.kind.startswith("idgham") for r in unit.rules)
            kinds[k] = HOLD_CLOSES_PREVIOUS if nasal_idgham else HOLD_BEFORE
    return kinds


def _sounding_boundary(sound_end, next_start, onset_kind) -> float:
    """Where one word gives way to the next across a long stretch of sound between their spikes
    (no pause): the next word's held first letter takes the stretch, an idgham nasal goes with
    the word before, anything else is split in the middle."""
    if onset_kind == HOLD_BEFORE:
        return min(sound_end + SPIKE_TAIL_S, next_start)
    if onset_kind == HOLD_CLOSES_PREVIOUS:
        return next_start
    return (sound_end + next_start) / 2


def _word_timings(n_words, word_of_token, result, reached, frame_seconds, offset_s, edge_pad_s,
                  edges, onset):
    """Timing of words ``0..n_words-1`` (here: each occurrence of a word heard) from the spikes;
    ``edges``: the audio's SoundEdges (None without audio), ``onset``: ``_held_onsets`` per token.

    Between two words whose spikes are close the boundary is the middle of the gap; across a
    pause each word stops where its sound does; across a long stretch of sound without a pause
    (a held letter) both words share one boundary (``_sounding_boundary``)."""
    starts = result.starts * frame_seconds
    ends = result.ends * frame_seconds
    gap_starts = result.blank_before * frame_seconds
    audio_end = result.num_frames * frame_seconds

    def sounding(a: float, b: float) -> bool:
        return edges is not None and edges.longest_silence(a, b) < PAUSE_S

    words = []
    for index in range(n_words):
        mine = np.flatnonzero((word_of_token == index) & reached)
        if not mine.size:
            said_later = np.flatnonzero((word_of_token > index) & reached)
            at = words[-1].end if words and said_later.size else np.nan
            words.append(Timing(index, at, at, 0.0, 0.0))
            continue
        first, last = mine[0], mine[-1]
        gap_start, sound_start = float(gap_starts[first]), float(starts[first])
        earliest = float(ends[first - 1]) if first > 0 else 0.0
        if first > 0 and sound_start - gap_start <= 2 * edge_pad_s:
            start = (gap_start + sound_start) / 2
        elif first > 0 and reached[first - 1] and sounding(earliest, sound_start):
            start = _sounding_boundary(earliest, sound_start, onset[first])
        else:  # after a pause, or at the beginning
            start = (edges.start_before(sound_start, earliest) if edges
                     else max(earliest, sound_start - edge_pad_s))
        sound_end = float(ends[last])
        following = last + 1 < len(starts) and reached[last + 1]
        next_start = float(starts[last + 1]) if following else None
        if next_start is not None and next_start - sound_end <= 2 * edge_pad_s:
            end = (sound_end + next_start) / 2
        elif next_start is not None and sounding(sound_end, next_start):
            end = _sounding_boundary(sound_end, next_start, onset[last + 1])
        else:  # before a pause, or at the end
            latest = next_start if next_start is not None else audio_end
            if edges:
                # on while there is sound, then back over silence: a CTC model may fire a word's
                # last token late, in the silence after it (a final madd's spike at the very end
                # of the recording, 0.4 s after the voice stopped)
                end = edges.back_to_sound(edges.end_after(sound_end, latest), start + frame_seconds)
            else:
                end = min(sound_end + edge_pad_s, latest)
        tokens = slice(first, last + 1)
        words.append(Timing(index, offset_s + start, offset_s + end,
                            float(result.mean_posterior[tokens].mean()), float(result.gop[tokens].mean())))
    return words


def _kept_visits(recited: list[int], first_heard: dict[int, int]) -> dict[int, int]:
    """For each word heard, the occurrence (position in ``recited``) the recitation went on from:
    its last occurrence before the next word was first heard (its last one if nothing follows)."""
    kept: dict[int, int] = {}
    for position, word in enumerate(recited):
        following = first_heard.get(word + 1)
        if following is None or position < following:
            kept[word] = position
    return dict(sorted(kept.items()))


def _select(result: Alignment, index: np.ndarray) -> Alignment:
    """The alignment of some of its tokens (in time order); index -1: a token not heard."""
    heard = index >= 0
    at = np.where(heard, index, 0)

    def pick(values, missing):
        return np.where(heard, values[at], missing).astype(values.dtype)

    return replace(result, tokens=result.tokens[at], starts=pick(result.starts, -1), ends=pick(result.ends, 0),
                   blank_before=pick(result.blank_before, -1), mean_posterior=pick(result.mean_posterior, 0),
                   gop=pick(result.gop, 0), num_aligned=int(np.count_nonzero(pick(result.starts, -1) >= 0)))


def _reference_word_timings(reference, first_heard, kept, visits) -> list[Timing]:
    """A word starts where it was first heard and ends where the recitation went on from it; its
    confidence is that of the occurrence kept. Words not heard (a partial stream) get NaN."""
    words: list[Timing] = []
    for word in reference.words:
        if word.index not in kept:  # not heard yet, or all its letters merged into the word before
            said_later = any(w > word.index for w in kept)
            at = words[-1].end if words and said_later else np.nan
            words.append(Timing(word.index, at, at, 0.0, 0.0))
            continue
        first, last = visits[first_heard[word.index]], visits[kept[word.index]]
        words.append(Timing(word.index, first.start, last.end, last.posterior, last.gop))
    return words

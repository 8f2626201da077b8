"""Content check: did the learner say the words of the ayah? Free decoding against the reference.

The greedy (best-path) decoding of the acoustic model is what the model heard without being
told the text. Aligning it to the reference phonemes with an edit-distance alignment (both with
runs collapsed, as the model emits them) shows, word by word, what was kept, changed or left
out, and what was added between words. Added material that sounds like a neighbouring word, or
like a good part of it (the alignment may split a word said twice anywhere between the two
copies), is a repetition; other added material between words is an extra. What is said before
the first word or after the last (the isti'adha, the basmala before a middle ayah, going on to
the next ayah, amin) is not the ayah's and is not reported, unless it repeats the first or last word.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
from Levenshtein import distance, opcodes

from ..acoustic.vocab import Vocabulary, best_path
from ..align.words import alignment_targets
from ..quran import Reference

MIN_KEPT = 0.5  # a word with less than half its phonemes heard is missing or substituted
MIN_EXTRA = 3  # inserted runs shorter than this are decoding noise, not words
REPEAT_MAX_PER = 0.4  # inserted material this close to a neighbouring word repeats it
PART_MIN_SHARE = 0.5  # ... or it is at least half as long as the word
PART_MAX_PER = 0.34  # ... and this close to a part of it
# a word mostly not heard was substituted when this much was said in its place (between what was
# heard of the words around it), else it is missing
MIN_SUBSTITUTE = 3
SUBSTITUTE_SHARE = 0.4
# the edit alignment of the decoding to the reference (``edit_opcodes``)
SUBSTITUTE_COST = 1.5  # a changed phoneme costs more than a dropped or an added one ...
MAX_TABLE = 8_000_000  # ... up to this many cells (3 x 8 bytes each; beyond, plain Levenshtein in C)
GAP_OPEN = 1e-3  # among equally cheap alignments, the one with added or dropped material in one piece


@dataclass(frozen=True)
class Heard:
    """The greedy decoding: one entry per emitted token, with the frame where it fired."""

    phonemes: str
    frames: np.ndarray

    @classmethod
    def from_log_probs(cls, log_probs: np.ndarray, vocab: Vocabulary) -> "Heard":
        ids, frames = best_path(log_probs, vocab.blank)
        return cls(vocab.decode(ids), frames.astype(np.int64))


@dataclass(frozen=True)
class WordContent:
    index: int
    expected: str
    heard: str
    kept: int
    changed: int
    dropped: int

    @property
    def kept_fraction(self) -> float:
        return self.kept / max(len(self.expected), 1)


@dataclass(frozen=True)
class ContentFinding:
    kind: str  # missing | substituted | repeated | extra
    word_indices: tuple[int, ...]
    expected: str
    heard: str
    frames: tuple[int, int] | None  # first and last decoded frame involved, if any


@dataclass
class ContentResult:
    per: float
    words: list[WordContent]
    findings: list[ContentFinding] = field(default_factory=list)

    def word_kind(self, index: int) -> str | None:
        for finding in self.findings:
            if finding.kind in ("missing", "substituted") and index in finding.word_indices:
                return finding.kind
        return None

    def wrong_words(self) -> set[int]:
        """The reference words said wrong or left out (not judged for tajweed, each one word's
        share off the content score)."""
        return {w for f in self.findings if f.kind in ("missing", "substituted") for w in f.word_indices}


def check_content(heard: Heard, reference: Reference, vocab: Vocabulary) -> ContentResult:
    targets = alignment_targets(reference, vocab)
    expected = vocab.decode(targets.ids)
    ref_word = targets.word_of_token(reference)
    n_words = len(reference.words)
    kept = np.zeros(n_words, int)
    changed = np.zeros(n_words, int)
    dropped = np.zeros(n_words, int)
    heard_by_word: list[list[int]] = [[] for _ in range(n_words)]
    inserted: list[tuple[int, int, int, bool]] = []  # (word before, hyp start, hyp end, before or after the ayah)

    for op, r0, r1, h0, h1 in edit_opcodes(expected, heard.phonemes):
        if op == "insert":
            inserted.append((int(ref_word[r0 - 1]) if r0 > 0 else -1, h0, h1, r0 in (0, len(expected))))
            continue
        for k, r in enumerate(range(r0, r1)):
            w = ref_word[r]
            if op == "equal":
                kept[w] += 1
                heard_by_word[w].append(h0 + k)
            elif op == "replace":
                changed[w] += 1
                if h0 + k < h1:
                    heard_by_word[w].append(h0 + k)
            else:
                dropped[w] += 1
        if op == "replace" and h1 - h0 > r1 - r0:  # a longer replacement also inserts
            inserted.append((int(ref_word[r1 - 1]), h0 + (r1 - r0), h1, r1 == len(expected)))

    words = []
    for w in range(n_words):
        own = expected_of(ref_word, expected, w)
        words.append(WordContent(w, own, "".join(heard.phonemes[i] for i in heard_by_word[w]),
                                 int(kept[w]), int(changed[w]), int(dropped[w])))

    findings = []
    replaced: list[tuple[int, int]] = []  # heard spans said in place of a word
    for word in words:
        if word.expected and word.kept_fraction < MIN_KEPT:
            h0, h1 = _heard_in_place_of(word.index, heard_by_word, len(heard.phonemes))
            said = heard.phonemes[h0:h1]
            if len(said) >= max(MIN_SUBSTITUTE, SUBSTITUTE_SHARE * len(word.expected)):
                replaced.append((h0, h1))
                frames = (int(heard.frames[h0]), int(heard.frames[h1 - 1]))
                findings.append(ContentFinding("substituted", (word.index,), word.expected, said, frames))
            else:
                idx = heard_by_word[word.index]
                frames = (int(heard.frames[idx[0]]), int(heard.frames[idx[-1]])) if idx else None
                findings.append(ContentFinding("missing", (word.index,), word.expected, word.heard, frames))
    for before, h0, h1, outside in inserted:
        if any(a <= h0 and h1 <= b for a, b in replaced):
            continue  # part of what was said instead of a word
        segment = heard.phonemes[h0:h1]
        repeated = _repeated_word(segment, words, before)
        if h1 - h0 < MIN_EXTRA and not (repeated is not None and _most_of(segment, words[repeated].expected)):
            continue  # short insertions are decoding noise unless they are (most of) a short word
        frames = (int(heard.frames[h0]), int(heard.frames[h1 - 1]))
        if repeated is not None:
            findings.append(ContentFinding("repeated", (repeated,), words[repeated].expected, segment, frames))
        elif outside:
            continue  # before the first word or after the last: the isti'adha, going on to the next ayah, amin
        else:
            findings.append(ContentFinding("extra", (max(before, 0),), "", segment, frames))
    findings.sort(key=lambda f: (f.word_indices[0], f.kind))
    per = distance(heard.phonemes, expected) / max(len(expected), 1)
    return ContentResult(per=per, words=words, findings=findings)


def _heard_in_place_of(w: int, heard_by_word: list[list[int]], n_heard: int) -> tuple[int, int]:
    """The span of the decoding between what was heard of the words before and after word ``w``."""
    before = [i for words in heard_by_word[:w] for i in words]
    after = [i for words in heard_by_word[w + 1:] for i in words]
    start = max(before) + 1 if before else 0
    end = min(after) if after else n_heard
    return start, max(start, end)


def edit_opcodes(expected: str, heard: str) -> list[tuple[str, int, int, int, int]]:
    """Edit operations from ``expected`` to ``heard``, as ``Levenshtein.opcodes`` gives them, with
    a substitution dearer than an insertion or a deletion. With equal costs a skipped word is
    often "explained" by shifting the next words' phonemes onto it (a chain of substitutions
    as cheap as the deletion); a learner skips words far more often than they mispronounce
    every phoneme of several words in a row."""
    if (len(expected) + 1) * (len(heard) + 1) > MAX_TABLE:
        return opcodes(expected, heard)
    steps = _edit_steps(_codes(expected), _codes(heard), SUBSTITUTE_COST)[::-1]
    names = ("equal", "replace", "delete", "insert")
    ops: list[tuple[str, int, int, int, int]] = []
    i = j = 0
    for step in steps:
        di, dj = (0, 1) if step == 3 else ((1, 0) if step == 2 else (1, 1))
        if ops and ops[-1][0] == names[step]:
            tag, r0, r1, h0, h1 = ops[-1]
            ops[-1] = (tag, r0, r1 + di, h0, h1 + dj)
        else:
            ops.append((names[step], i, i + di, j, j + dj))
        i, j = i + di, j + dj
    return ops


@numba.njit(cache=True, nogil=True)
def _edit_steps(a, b, sub):
    """Weighted edit distance with three states (the last step a match or substitution, a
    deletion, an insertion; opening a run of deletions or insertions costs ``GAP_OPEN`` more)
    and its backtrace, last step first: 0 equal, 1 replace, 2 delete, 3 insert."""
    n, m = a.size, b.size
    cost = np.full((3, n + 1, m + 1), 1e18)  # state 0: diagonal, 1: delete, 2: insert
    cost[0, 0, 0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            if i > 0 and j > 0:
                cost[0, i, j] = (min(cost[0, i - 1, j - 1], cost[1, i - 1, j - 1], cost[2, i - 1, j - 1])
                                 + (0.0 if a[i - 1] == b[j - 1] else sub))
            if i > 0:
                cost[1, i, j] = min(cost[1, i - 1, j], min(cost[0, i - 1, j], cost[2, i - 1, j]) + GAP_OPEN) + 1.0
            if j > 0:
                cost[2, i, j] = min(cost[2, i, j - 1], min(cost[0, i, j - 1], cost[1, i, j - 1]) + GAP_OPEN) + 1.0
    steps = np.empty(n + m, dtype=np.int8)
    state = 0  # on ties, end on added or dropped material, as Levenshtein puts it
    for s in (1, 2):
        if cost[s, n, m] <= cost[state, n, m] + 1e-9:
            state = s
    k, i, j = 0, n, m
    while i > 0 or j > 0:
        if state == 0:
            steps[k] = 0 if a[i - 1] == b[j - 1] else 1
            i, j = i - 1, j - 1
            nxt = 0
            for s in (2, 1):  # prefer a gap just before, so it sits as late as it can
                if cost[s, i, j] <= cost[nxt, i, j] + 1e-9:
                    nxt = s
        elif state == 1:
            steps[k] = 2
            i -= 1
            nxt = 1 if cost[1, i, j] <= min(cost[0, i, j], cost[2, i, j]) + GAP_OPEN + 1e-9 else (
                0 if cost[0, i, j] <= cost[2, i, j] else 2)
        else:
            steps[k] = 3
            j -= 1
            nxt = 2 if cost[2, i, j] <= min(cost[0, i, j], cost[1, i, j]) + GAP_OPEN + 1e-9 else (
                0 if cost[0, i, j] <= cost[1, i, j] else 1)
        state = nxt
        k += 1
    return steps[:k]


def expected_of(ref_word: np.ndarray, expected: str, w: int) -> str:
    return "".join(expected[i] for i in np.flatnonzero(ref_word == w))


@numba.njit(cache=True)
def _infix_distance(a: np.ndarray, b: np.ndarray) -> int:
    prev = np.zeros(b.size + 1, np.int64)  # a[:0] matches an empty infix anywhere: free start
    for i in range(1, a.size + 1):
        cur = np.empty_like(prev)
        cur[0] = i
        for j in range(1, b.size + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
        prev = cur
    return int(prev.min())  # free end


def infix_distance(part: str, word: str) -> int:
    """Edits that turn ``part`` into the closest stretch (infix) of ``word``."""
    return _infix_distance(_codes(part), _codes(word))


def _codes(text: str) -> np.ndarray:
    """The characters of ``text`` as integers, for the numba kernels."""
    return np.array([ord(c) for c in text], dtype=np.int64)


def _most_of(segment: str, word: str) -> bool:
    """Whether ``segment`` is the word, or two thirds of it or more as said twice (``مِن`` said
    twice is often heard ``مِمِن``: the first nasal runs into the second copy)."""
    return segment == word or (len(segment) >= 2 and 3 * len(segment) >= 2 * len(word) and segment in word * 2)


def _repeated_word(segment: str, words: list[WordContent], before: int) -> int | None:
    """The neighbouring word (or run of words) the inserted segment repeats, if any."""
    best, best_per = None, 1.0
    for w in (before, before + 1):
        if not 0 <= w < len(words) or not words[w].expected:
            continue
        expected = words[w].expected
        per = distance(segment, expected) / len(expected) / REPEAT_MAX_PER
        # the edit alignment may split a word said twice anywhere between the two copies, so the
        # insertion can be the end of the first copy and the start of the second: a long enough
        # stretch of the word said twice (an infix of ``expected + expected``) also counts
        if len(segment) >= PART_MIN_SHARE * len(expected):
            per = min(per, infix_distance(segment, expected + expected) / len(segment) / PART_MAX_PER)
        if per < best_per:
            best, best_per = w, per
    return best


# a word free decoding heard less than this share of is judged by how the forced alignment fits
# it (mean goodness of pronunciation of its tokens, nats): below FIT_MAX_GOP another word was
# said in its place (or none), at or above it the word was said and only heard differently
FIT_MAX_KEPT = 0.7
FIT_MAX_GOP = -3.0
# words with a fit needed to know how well a reciter's words fit on the whole: a word left out
# fits badly and squeezes a neighbour, so the median must need three bad words to move
FIT_MIN_WORDS = 5


def fit_line(fits: list[float | None]) -> float:
    """The fit under which a word was not said: FIT_MAX_GOP below how well this reciter's words
    fit on the whole (their median, when under 0). A professional's words fit at 0 and the line
    stays at FIT_MAX_GOP; a learner's accent lowers every word's fit (RetaSy's takes: medians
    down to -2 nats), and a word is judged against the learner's own voice, not a
    professional's. It takes more than half of the words (at least FIT_MIN_WORDS) fitting badly
    to move the line."""
    known = [f for f in fits if f is not None]
    if len(known) < FIT_MIN_WORDS:
        return FIT_MAX_GOP
    return FIT_MAX_GOP + min(0.0, float(np.median(known)))


def word_fits(aligned, reference: Reference, whole: bool = True) -> list[float | None]:
    """For each reference word, the mean goodness of pronunciation (nats) of its tokens under the
    forced alignment. None where the alignment did not hear all of them (a word skipped by the
    restart-aware alignment, or squeezed out of a partial one); with ``whole`` False, the mean
    of those it heard, None only where it heard none (a live window may judge a word before
    its last tokens are placed: the reciter went on)."""
    word_of_token = aligned.targets.word_of_token(reference)
    word_of_token = word_of_token[word_of_token.size - len(aligned.alignment):]  # from ``first_word`` on
    reached = aligned.alignment.starts >= 0
    fits: list[float | None] = []
    for word in reference.words:
        mine = np.flatnonzero(word_of_token == word.index)
        heard = mine[reached[mine]]
        usable = heard.size > 0 and (heard.size == mine.size or not whole)
        fits.append(float(aligned.alignment.gop[heard].mean()) if usable else None)
    return fits


def judge_words_by_fit(content: ContentResult, aligned, reference: Reference, offset_s: float,
                       frame_s: float) -> None:
    """Free decoding alone is not enough to call a word wrong; the forced alignment of the
    expected phonemes decides the words the decoding heard little of (less than FIT_MAX_KEPT).

    * Said as another word: another word said in place of the expected one often shares its
      short vowels and a letter or two by chance (قَالَ said as عَلَى keeps 3 of its 5 phonemes),
      so the decoding alone keeps it. Forcing the expected phonemes onto those frames shows it:
      their log-probabilities fall far below the best ones. What free decoding called extra
      material over the word is part of what was said instead.
    * Said, heard differently: a learner's accent, or a soft voice, costs the decoding half of
      a word's phonemes while the expected ones still fit those frames as well as a
      professional's words do. Such a word is not reported (the restart-aware alignment has to
      have heard all of its tokens: a word left out is skipped by it, or squeezed).

    The threshold was set on the train split, where 14 of 7,624 professional words (0.2 %) fit
    this badly with less than 0.7 of them kept; planted substitutions on dev fit at -3.3 to -6.5
    nats. It is relative to how the reciter's words fit on the whole (``fit_line``)."""
    fits = word_fits(aligned, reference)
    line = fit_line(fits)
    for word in content.words:
        if not word.expected or word.kept_fraction >= FIT_MAX_KEPT:
            continue
        fit = fits[word.index]
        kind = content.word_kind(word.index)
        if kind is not None:
            if fit is not None and fit >= line:
                content.findings = [f for f in content.findings
                                    if not (f.kind == kind and f.word_indices == (word.index,))]
            continue
        timing = aligned.words[word.index]
        if fit is None or fit >= line or not timing.end > timing.start:
            continue
        frames = (max(0, int(round((timing.start - offset_s) / frame_s))),
                  max(0, int(round((timing.end - offset_s) / frame_s)) - 1))
        inside = [f for f in content.findings if f.kind == "extra" and f.frames
                  and frames[0] <= f.frames[0] and f.frames[1] <= frames[1]]
        for finding in inside:
            content.findings.remove(finding)
        content.findings.append(ContentFinding("substituted", (word.index,), word.expected, word.heard, frames))
    content.findings.sort(key=lambda f: (f.word_indices[0], f.kind))


RESTART_PAUSE_S = 0.2  # silence that makes a stop: going back after one is ibtida' (allowed)


def add_alignment_repeats(content: ContentResult, aligned, offset_s: float, frame_s: float) -> None:
    """Repetitions the restart-aware alignment heard (``ReferenceAlignment.repeats``) that free
    decoding missed or called extra material: words said again with no stop before them. A
    restart after a stop (silence) is the reciter's ibtida' and is not a mistake: the extra or
    repeated material free decoding heard over it is dropped, and the extra material over the
    words' first pass (the edit alignment may match either pass to the reference and call the
    other one extra). On the dev
    recordings, planted repeats had at most 0.1 s of silence before them, Alafasy's own restarts
    mostly 0.27-0.77 s."""
    def overlapping(first_s: float, last_s: float, kinds=("repeated", "extra")) -> list[ContentFinding]:
        frames = (int(round((first_s - offset_s) / frame_s)), int(round((last_s - offset_s) / frame_s)))
        return [f for f in content.findings if f.kind in kinds and f.frames
                and f.frames[0] <= frames[1] and frames[0] <= f.frames[1]]

    for words, start, end, pause in aligned.repeats():
        if pause >= RESTART_PAUSE_S:  # ibtida': what free decoding heard again is no error
            first_said = aligned.words[words[0]].start
            first_pass = overlapping(first_said, start, ("extra",)) if np.isfinite(first_said) else []
            for finding in overlapping(start, end) + first_pass:
                if finding in content.findings:
                    content.findings.remove(finding)
            continue
        frames = (max(0, int(round((start - offset_s) / frame_s))), int(round((end - offset_s) / frame_s)))
        here = overlapping(start, end)
        if any(f.kind == "repeated" for f in here) or any(
                f.kind == "repeated" and set(f.word_indices) & set(words) for f in content.findings):
            continue
        for finding in here:
            content.findings.remove(finding)
        expected = "".join(content.words[w].expected for w in words)
        content.findings.append(ContentFinding("repeated", tuple(words), expected, expected, frames))
    content.findings.sort(key=lambda f: (f.word_indices[0], f.kind))

"""Live assessment, sans I/O: ``StreamingAnalyzer.feed(pcm) -> events``, ``flush()`` and
``finish() -> events``.

Silero VAD finds where the recitation begins (or, for a voice it misses, the sound level: see
``audio.energy.voice_by_energy``). From then on, every ``step_s`` of new audio, the
rest of the reference is aligned, with a partial CTC alignment (the audio holds only a prefix
of the ayah), to a window that starts a few words back (``context_words``). The acoustic model
does not run on the whole window each step: frames settled at the previous step are kept, and
the model hears only the newest audio with ``model_context_s`` before it, plus a little quiet
after it (``end_pad_s``), which settles the last sounds sooner; once a step has found the reciter
silent, steps are skipped while the audio stays that quiet (a pause costs no model runs). A word
is confirmed once the
next word has clearly begun (``margin_s``), or once the reciter has been silent that long after
it (a stop: the next word may be seconds away), or once the free decoding shows the reciter
past it while the alignment is stuck before its end (the model does not hear the rest as
written, or hears nothing of it: a learner's accent): more phonemes heard past the alignment's
last unit than are left up to the word's end, or, after that unit, the opening of the next
word; it is then judged (free decoding of its stretch
against its phonemes, then the tajweed validators on its units) and sent as a ``word`` event,
with its ``violation`` events. Words still inside the window are aligned again at the next
step; if a boundary moves by more than ``revise_s`` the word is sent again with ``revision`` +
1. ``flush()`` confirms what is left once the audio has ended; ``finish()`` runs the offline
pipeline on the whole recording, so the ``final`` report is exactly what ``iqrah analyze`` says
of the same audio, and re-sends any word whose verdict or boundaries that changes. The live
steps and the final report may use two models (``final_model``): a fast one for the many short
windows, a stronger one for the one pass over the whole recording. ``prepare_final()`` runs the
final model, while the reciter goes on, on each window of the final report that the audio has
completed (a caller runs it between feeds, when ``final_window_due``): after ``stop`` only the
last window is left to run (a 20 s recitation: one window of three). Each ``word``
event carries the word's melody: the audio goes through a pitch tracker (``audio.pitch``, the
same frames ``analyze`` computes) piece by piece, each time a word is sent.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import numpy as np

from .acoustic.base import AcousticModel
from .acoustic.onnx_model import WindowMemo
from .acoustic.vocab import collapse_runs
from .align import AlignmentError
from .align.words import align_reference
from .analyze import EDGE_S, analyze
from .assess.content import Heard, fit_line, word_fits
from .assess.findings import AssessmentContext
from .assess.judge import run_validators, word_content, word_verdict
from .assess.prosody import Contour, compare_word, prosody_applies
from .audio import SAMPLE_RATE, AudioError, AudioLimitError, SpeechSegment, VadStream
from .audio.energy import PAUSE_MARGIN_DB, SoundEdges, voice_by_energy
from .audio.pitch import Pitch, PitchTracker, pitch_summary
from .config import AnalyzeSettings
from .quran import build_reference, parse_spec
from .report.build import violation
from .report.feedback import prosody_feedback
from .stopwatch import Stopwatch

END_PAD_LEVEL = 0.01  # the quiet appended to a window: noise at 1 % of the window's RMS


@dataclass(frozen=True)
class Event:
    """One message for the client: ``type`` (partial, word, violation, final), its data, and the
    stream position in ms of audio received that it was computed from."""

    type: str
    data: dict
    audio_ms: int


@dataclass
class WordState:
    index: int
    start: float
    end: float
    verdict: str
    revision: int = 0
    violations: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON-ready values (a snapshot, a resumed client's word list)."""
        return {"index": self.index, "start": self.start, "end": self.end, "verdict": self.verdict,
                "revision": self.revision, "violations": self.violations}


class StreamingAnalyzer:
    def __init__(self, spec: str, settings: AnalyzeSettings | None = None,
                 model: AcousticModel | None = None, *, final_model: AcousticModel | None = None,
                 reciter: tuple[str, dict] | None = None,
                 step_s: float = 0.25, context_words: int = 2,
                 margin_s: float = 0.3, revise_s: float = 0.04, max_window_s: float = 20.0,
                 end_pad_s: float = 0.3, settle_s: float = 0.5, model_context_s: float = 1.5):
        if model is None:
            from .acoustic.registry import load_model

            model = load_model()
        # two passes: ``model`` hears the live window several times a second, ``final_model``
        # (default: the same) the whole recording once, for the final report
        self.final_model = final_model or model
        self.settings = settings or AnalyzeSettings()
        # a stream cannot wait to hear whether a basmala comes first: only when asked for
        self.settings = replace(self.settings, basmala="yes" if self.settings.basmala == "yes" else "no")
        self.spec = parse_spec(spec)
        self.reference = build_reference(self.spec, self.settings.recitation,
                                         include_basmala=self.settings.basmala == "yes")
        self.model = model
        # a reference reciter (name, entry of this ayah): each word event compares with theirs
        self.reciter = reciter if reciter and prosody_applies(self.reference, reciter[1]) else None
        if self.reciter is not None:  # read once: each word event compares with them
            self._ref_spans = {int(i): (s, e) for i, s, e in self.reciter[1]["words"]}
            self._ref_contour = Contour.from_entry(self.reciter[1]["pitch"])
        self.step_s, self.context_words, self.margin_s = step_s, context_words, margin_s
        self.revise_s, self.max_window_s = revise_s, max_window_s
        self.end_pad_s, self.settle_s, self.model_context_s = end_pad_s, settle_s, model_context_s
        self._hop = round(model.frame_seconds * SAMPLE_RATE)
        self._cache = np.zeros((0, len(model.vocab)), np.float32)  # log-probs of the last step
        self._cache_from = 0  # the stream frame its first row belongs to
        # the last unit of each word that ends in a plain sound (no madd, ghunnah, qalqalah...
        # measured on it): such a word is over once that sound has been heard
        self._plain_end = {w.index: units[-1].index for w in self.reference.words
                           if (units := self.reference.word_units(w.index)) and not units[-1].rules}
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._vad = VadStream()
        self._pitch_tracker = PitchTracker()  # the melody, frame by frame as audio arrives
        self._pitch_samples = 0  # audio the tracker has had
        self._pitch = Pitch.empty()
        self._vad_offset = 0  # stream position where this VAD started (after a restore)
        # what the VAD heard, for the final report; None once a busy server stopped the VAD
        self._speech: list[SpeechSegment] | None = []
        self._clock = Stopwatch()  # the stages of the last feed() or finish()
        self._speech_from: int | None = None
        # where the VAD's first segment begins (kept when a busy server stops the VAD): the
        # final report cuts the recording there, so its windows can be run before it
        self._first_segment: int | None = None
        self._final_windows = WindowMemo()
        self._final_windows_run = 0  # how many of them prepare_final has run, in order
        self._last_step = 0
        self._last_partial = 0
        self._silence_db: float | None = None  # set while the reciter pauses (see _still_silent)
        self.quiet_steps = 0  # steps skipped in pauses
        self.words: dict[int, WordState] = {}
        # how the alignment fitted each word judged so far: the reciter's voice (fit_line)
        self._fits: dict[int, float] = {}
        # unit -> (start, held seconds) of the words judged so far: the reciter's count (pace)
        self._held: dict[int, tuple[float, float]] = {}
        self.next_word = 0
        self.finished = False

    # ---- input -------------------------------------------------------------------------
    def feed(self, pcm: np.ndarray, step_s: float | None = None) -> list[Event]:
        """Take 16 kHz mono float32 samples; return the events they produced.

        ``step_s`` overrides how much new audio triggers the next alignment (a busy server
        steps less often: fewer model runs per second of audio, same results per word).
        """
        if self.finished:
            raise RuntimeError("the stream is finished")
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        self._clock = Stopwatch()
        if pcm.size == 0:
            return []
        if not np.all(np.isfinite(pcm)):
            raise AudioError("audio contains NaN or infinite samples")
        if self._samples + pcm.size > self.settings.limits.max_seconds * SAMPLE_RATE:
            raise AudioLimitError(f"the recitation is longer than the {self.settings.limits.max_seconds / 60:g} "
                             "min limit of a session")
        self._chunks.append(pcm)
        self._samples += pcm.size
        # the VAD finds where the recitation begins; from there on the alignment follows it
        self._listen(pcm, busy=step_s is not None and step_s > self.step_s)
        if self._samples - self._last_step < (step_s or self.step_s) * SAMPLE_RATE:
            # a busy server steps less often; the client still hears from it every second
            return self._partial_if_due()
        if self._still_silent():  # a pause already seen as one: nothing new to align
            self._last_step = self._samples
            self.quiet_steps += 1
            return self._partial_if_due()
        self._last_step = self._samples
        events = self._step() if self._speech_from is not None else []
        return events + [self._partial()]

    def _still_silent(self) -> bool:
        """The last step found the reciter silent (and confirmed what that lets it confirm), and
        every 10 ms since stays under that window's silence level: the step is skipped, so a
        pause costs no model runs. The first sound above it brings the steps back."""
        if self._silence_db is None:
            return False
        db = SoundEdges.frame_db(self.audio()[self._last_step :], SAMPLE_RATE)
        return bool(db.size) and bool(np.all(db <= self._silence_db))

    def _listen(self, pcm: np.ndarray, busy: bool = False) -> None:
        """Silero VAD on the new audio. Once the recitation has begun it goes on to the end, as
        ``analyze`` runs it on the whole recording, so that the final report takes its segments
        instead of running it again (about a quarter of the final report's time, after the
        reciter has stopped) - unless the server is ``busy`` (it steps less often): the VAD then
        stops, sparing its cost while many streams run, and the final report runs it (where its
        first segment begins, if still open, is kept: the final report's windows begin there,
        see ``prepare_final``)."""
        if self._speech_from is not None and (busy or self._speech is None):
            if self._speech is not None and self._first_segment is None and self._vad_offset == 0:
                self._first_segment = self._vad.open_segment_start
            self._speech = None
            return
        with self._clock.stage("vad"):
            for segment in self._vad.feed(pcm):
                self._speech.append(segment)
                if self._first_segment is None and self._vad_offset == 0:
                    self._first_segment = segment.start
                if self._speech_from is None:
                    self._note_speech(self._vad_offset + segment.start)
            if self._speech_from is not None:
                return
            if self._vad.speaking:
                self._note_speech(max(0, self._vad_offset + self._vad.position - SAMPLE_RATE // 4))
            # Silero misses some voices (as ``analyze`` knows): after each further second
            # without speech, the last 10 s are searched for a voice by their energy
            heard = self._samples - self._vad_offset
            if self._speech_from is None and heard // SAMPLE_RATE > (heard - pcm.size) // SAMPLE_RATE:
                recent = self.audio()[-10 * SAMPLE_RATE:]
                voice = voice_by_energy(recent)
                if voice:
                    self._note_speech(self._samples - recent.size + voice[0].start)

    def flush(self) -> list[Event]:
        """The audio has ended (before ``finish``): confirm and judge every word heard so far,
        without waiting for what would follow it. Cheap, so a server can send these words before
        the final report, which takes longer."""
        if self.finished or self._speech_from is None:
            return []
        self._clock = Stopwatch()
        self._last_step = self._samples
        return self._step(ended=True)

    def finish(self) -> list[Event]:
        """End of the recitation: the final report, and corrections to what was sent."""
        self.finished = True
        audio = self.audio()
        # the VAD heard the whole recording unless the stream was restored from a snapshot
        speech = self._speech + self._vad.flush() if self._vad_offset == 0 and self._speech is not None else None
        with self._reusing_final_windows():
            report = analyze(audio, str(self.spec), self.settings, self.final_model, pitch=self.pitch,
                             reciter=self.reciter, speech=speech)
        self._clock.ms = dict(report.timings_ms)
        events = []
        for word in report.words:
            sent = self.words.get(word.index)
            if word.start is None:
                continue
            changed = sent is None or sent.verdict != word.verdict or abs(sent.start - word.start) > self.revise_s \
                or abs(sent.end - word.end) > self.revise_s
            if changed:
                state = WordState(word.index, word.start, word.end, word.verdict,
                                  revision=(sent.revision + 1) if sent else 0)
                self.words[word.index] = state
                events.append(self._word_event(state))
        sent_violations = {(v["rule"], v["phoneme_index"]) for w in self.words.values() for v in w.violations}
        for found in report.violations:
            if (found.rule, found.phoneme_index) not in sent_violations:
                events.append(Event("violation", found.model_dump(), self._ms()))
        events.append(Event("final", report.model_dump(mode="json"), self._ms()))
        return events

    def _next_final_window(self) -> tuple[int, int] | None:
        """(start, end) in the stream of the next window of the final report's model that the
        audio received has completed and that has not been run, or None."""
        settled = getattr(self.final_model, "settled_windows", None)
        if settled is None or self._first_segment is None or self.finished:
            return None
        # the final report hears the recording from EDGE_S before the first speech (analyze.judge)
        first = max(0, self._first_segment - int(EDGE_S * SAMPLE_RATE))
        windows = settled(self._samples - first)
        if len(windows) <= self._final_windows_run:
            return None
        start, end = windows[self._final_windows_run]
        return first + start, first + end

    @property
    def final_window_due(self) -> bool:
        """Whether ``prepare_final`` has a window to run."""
        return self._next_final_window() is not None

    def prepare_final(self) -> None:
        """Run the final model on the next window of the final report that the audio received has
        completed (cheap to call when there is none). The report takes the outputs only if its
        window holds exactly these samples (``WindowMemo``)."""
        window = self._next_final_window()
        if window is None:
            return
        chunks = list(self._chunks)  # a snapshot: a feed may append meanwhile
        audio = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        self.final_model.run_window(audio[window[0] : window[1]], self._final_windows)
        self._final_windows_run += 1

    def _reusing_final_windows(self):
        reusing = getattr(self.final_model, "reusing", None)
        return reusing(self._final_windows) if reusing is not None else nullcontext()

    def snapshot(self) -> dict:
        """What a reconnecting client needs restored (the audio is stored beside it)."""
        return {"spec": str(self.spec), "samples": self._samples, "speech_from": self._speech_from,
                "next_word": self.next_word, "fits": {str(w): f for w, f in self._fits.items()},
                "held": {str(u): list(v) for u, v in self._held.items()},
                "words": {str(w): s.to_dict() for w, s in self.words.items()}}

    def restore(self, snapshot: dict, audio: np.ndarray) -> None:
        """Continue a stream from a snapshot and the audio received before it."""
        self._chunks = [np.asarray(audio, dtype=np.float32)]
        self._samples = self._last_step = self._vad_offset = int(audio.size)
        self._pitch_tracker, self._pitch_samples, self._pitch = PitchTracker(), 0, Pitch.empty()
        self._speech_from = snapshot.get("speech_from")
        self.next_word = int(snapshot.get("next_word", 0))
        self.words = {int(w): WordState(**state) for w, state in snapshot.get("words", {}).items()}
        self._fits = {int(w): float(f) for w, f in snapshot.get("fits", {}).items()}
        self._held = {int(u): (float(a), float(b)) for u, (a, b) in snapshot.get("held", {}).items()}

    @property
    def samples_received(self) -> int:
        """How much audio the stream holds (16 kHz samples), restored audio included."""
        return self._samples

    def audio(self) -> np.ndarray:
        """All the audio received, as one array."""
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, np.float32)

    @property
    def pitch(self) -> Pitch:
        """F0 of all the audio received (20 ms frames), brought up to date when asked for (a word
        is sent, the final report), not at each chunk: a call costs about as much for 0.1 s as
        for 1 s."""
        if self._pitch_samples < self._samples:
            with self._clock.stage("pitch"):
                fresh = self.audio()[self._pitch_samples:]
                self._pitch = self._pitch.concat(self._pitch_tracker.feed(fresh))
                self._pitch_samples = self._samples
        return self._pitch

    # ---- work --------------------------------------------------------------------------
    @property
    def stage_ms(self) -> dict[str, float]:
        """Milliseconds spent per stage in the last feed() or finish(), for metrics."""
        return self._clock.ms

    def _note_speech(self, sample: int) -> None:
        if self._speech_from is None or sample < self._speech_from:
            self._speech_from = sample

    def _ms(self) -> int:
        return int(self._samples * 1000 / SAMPLE_RATE)

    def _window_start(self) -> tuple[float, int]:
        first = max(0, self.next_word - self.context_words)
        if first in self.words:
            start = self.words[first].start - 0.3
        else:
            start = self._speech_from / SAMPLE_RATE - 0.3
        return max(0.0, start, self._samples / SAMPLE_RATE - self.max_window_s), first

    def _step(self, ended: bool = False) -> list[Event]:
        start_s, first_word = self._window_start()
        audio = self.audio()
        first_frame = int(start_s * SAMPLE_RATE) // self._hop
        start_s = first_frame * self._hop / SAMPLE_RATE
        window = audio[first_frame * self._hop :]
        if window.size < 0.3 * SAMPLE_RATE:
            return []
        with self._clock.stage("acoustic"):
            log_probs = self._window_log_probs(first_frame, audio)
        try:
            with self._clock.stage("align"):
                aligned = align_reference(log_probs, self.reference, self.model.vocab, self.model.frame_seconds,
                                          offset_s=start_s, audio=window, first_word=first_word, partial=True)
        except AlignmentError:
            return []
        heard = Heard.from_log_probs(log_probs, self.model.vocab)
        heard_times = start_s + heard.frames * self.model.frame_seconds
        window_end = self._samples / SAMPLE_RATE
        events = []
        fits = None  # how the alignment fits each word (word_fits), once a word is judged
        last_word = len(self.reference.words) - 1
        # the reciter has stopped: the window ends in ``margin_s`` of silence
        quiet_s = aligned.edges.longest_silence(window_end - start_s - self.margin_s, window_end - start_s)
        stopped = quiet_s >= self.margin_s - 0.02
        self._silence_db = aligned.edges.floor + PAUSE_MARGIN_DB if stopped and not ended else None
        for w in range(first_word, last_word + 1):
            timing = aligned.words[w]
            after = aligned.words[w + 1] if w < last_word else None
            next_begun = (after is not None and np.isfinite(after.start)
                          and window_end - after.start >= self.margin_s)
            # or it was heard whole and the reciter stopped after it (the last word: the end of
            # the ayah): no need to wait for the next word to be sure
            heard_whole = np.isfinite(timing.end)
            paused = stopped and (after is None or not np.isfinite(after.start)) and heard_whole
            # or its last sound, a plain one, was heard ``margin_s`` ago: what sounds since (a
            # held first letter of the next word, a breath) is not its concern. Until the next
            # word begins, the word ends with that sound.
            plain_end = self._plain_end.get(w)
            last_sound = aligned.units[plain_end].end if plain_end is not None else np.nan
            said = window_end - last_sound >= self.margin_s
            # or the alignment is stuck inside it or before it (it hears none of what is expected
            # next) while the reciter has gone on (see _heard_past)
            outrun = (np.nan if next_begun or (after is not None and np.isfinite(after.start))
                      else self._heard_past(w, aligned, heard, heard_times))
            past = window_end - outrun >= self.margin_s
            if not (next_begun or paused or said or past or (ended and heard_whole)):
                break
            if said and not (next_begun or paused or ended):
                timing = replace(timing, end=min(timing.end, last_sound + self.model.frame_seconds))
            elif past and not (next_begun or paused or ended):
                timing = replace(timing, end=min(timing.end, outrun))
            if past and not np.isfinite(timing.start):  # none of it was placed: it fills the gap
                before = self.words.get(w - 1)
                timing = replace(timing, start=min(before.end, outrun) if before else outrun, end=outrun)
            sent = self.words.get(w)
            if sent is not None:
                # the window starts inside the sound of its first word: that word's start is the
                # window's, not its own
                start = sent.start if w == first_word and first_word > 0 else timing.start
                moved = abs(sent.start - start) > self.revise_s or abs(sent.end - timing.end) > self.revise_s
                if moved and w >= self.next_word - self.context_words:
                    sent.start, sent.end, sent.revision = start, timing.end, sent.revision + 1
                    events.append(self._word_event(sent))
                continue
            with self._clock.stage("assess"):
                fits = fits if fits is not None else word_fits(aligned, self.reference, whole=False)
                line = fit_line([*self._fits.values(), fits[w]])
                state, violations = self._judge(w, timing, fits[w], line, aligned, audio, heard, heard_times)
                if fits[w] is not None:
                    self._fits[w] = fits[w]
            self.words[w] = state
            self.next_word = w + 1
            events.append(self._word_event(state))
            events += [Event("violation", v, self._ms()) for v in violations]
        return events

    def _heard_past(self, w: int, aligned, heard, heard_times: np.ndarray) -> float:
        """When the free decoding shows the reciter past word ``w`` although the alignment is
        stuck before its end (it hears none of what is expected next), the time the next word
        began, else NaN. From the last unit the alignment reached, in ``w`` or before it
        (the frontier), the decoding heard either

        * more phonemes than there are from the frontier to the end of ``w`` (a learner's
          accent: the rest was heard, as something else): the first phoneme beyond them; or
        * after the frontier's own phonemes, the opening of word ``w + 1`` (its first letter,
          then one of its next three phonemes; the rest of ``w`` was not heard at all): its
          first letter.
        """
        words = self.reference.words
        units = [u for v in range(max(0, w - self.context_words), w + 1) for u in self.reference.word_units(v)]
        reached = [k for k, u in enumerate(units) if np.isfinite(aligned.units[u.index].start)]
        if not reached:
            return np.nan
        frontier = units[reached[-1]]
        rest = collapse_runs("".join(u.phonemes for u in units[reached[-1] + 1:]))
        own = len(collapse_runs(frontier.phonemes))
        since = np.flatnonzero(heard_times >= aligned.units[frontier.index].start)
        # a held sound may fire twice (``اا``): runs count once
        since = [k for j, k in enumerate(since) if j == 0 or heard.phonemes[k] != heard.phonemes[since[j - 1]]]
        beyond = own + len(rest)  # the frontier unit's own phonemes, then the rest up to the end of w
        if len(since) > beyond:
            return float(heard_times[since[beyond]])
        after = since[own:]
        if w + 1 < len(words) and len(after) >= 2:
            opening = collapse_runs(words[w + 1].phonemes)
            first, second = heard.phonemes[after[0]], heard.phonemes[after[1]]
            if first == opening[0] and first not in rest and second in opening[1:4]:
                return float(heard_times[after[0]])
        return np.nan

    def _window_log_probs(self, first_frame: int, audio: np.ndarray) -> np.ndarray:
        """Log-probs of frames ``first_frame`` .. now (40 ms frames of the stream).

        The model runs only on the newest audio with ``model_context_s`` before it: frames older
        than ``settle_s`` before the end of the previous step are taken from that step (more
        audio after them hardly changes them). The model learnt from recordings that end in
        silence and is unsure of the last sounds until it hears what follows them; a little
        quiet appended to the audio (its frames dropped) settles them sooner."""
        hop = self._hop
        last_frame = audio.size // hop
        cache_end = self._cache_from + len(self._cache)
        settled = cache_end - int(self.settle_s / self.model.frame_seconds)
        context = int(self.model_context_s / self.model.frame_seconds)
        if self._cache_from <= first_frame and settled - context > first_frame:
            run_from = settled - context
            reuse = self._cache[first_frame - self._cache_from : settled - self._cache_from]
        else:
            run_from, reuse = first_frame, self._cache[:0]
        pad = int(self.end_pad_s * SAMPLE_RATE)
        chunk = audio[run_from * hop :]
        if pad > 0:
            rng = np.random.default_rng(0)
            level = END_PAD_LEVEL * max(float(np.sqrt(np.mean(chunk**2))), 1e-6)
            chunk = np.concatenate([chunk, (rng.standard_normal(pad) * level).astype(np.float32)])
        fresh = self.model.log_probs(chunk)
        fresh = fresh[first_frame + len(reuse) - run_from : last_frame - run_from]
        log_probs = np.concatenate([reuse, fresh]) if len(reuse) else fresh
        self._cache, self._cache_from = log_probs, first_frame
        return log_probs

    def _judge(self, w, timing, fit, line, aligned, audio, heard, heard_times):
        """The word's verdict and violations, by the judge the final report uses, from what the
        free decoding heard in its stretch, how the alignment fits it (``word_fits``) and what
        the validators measure on its sounds (``line``: ``fit_line`` of the words judged so far)."""
        expected = collapse_runs(self.reference.words[w].phonemes)
        said = "".join(c for c, t in zip(heard.phonemes, heard_times) if timing.start <= t < timing.end)
        content_kind = word_content(expected, said, fit, line)
        findings = []
        if content_kind is None:
            ctx = AssessmentContext(self.reference, aligned, audio, SAMPLE_RATE, only_words={w},
                                    earlier_held=self._held)
            findings, _ = run_validators(ctx)
            for unit in self.reference.word_units(w):
                if np.isfinite(ctx.held[unit.index]):
                    self._held[unit.index] = (aligned.units[unit.index].start, float(ctx.held[unit.index]))
        violations = [violation(f).model_dump(mode="json") for f in findings]
        verdict = word_verdict(content_kind, True, bool(findings))
        return WordState(w, timing.start, timing.end, verdict, violations=violations), violations

    def _word_event(self, state: WordState) -> Event:
        word = self.reference.words[state.index]
        units = [{"index": u.index, "phonemes": u.phonemes, "rules": [r.tag for r in u.rules]}
                 for u in self.reference.word_units(state.index)]
        data = {"index": state.index, "text": word.text, "start": round(state.start, 3),
                "end": round(state.end, 3), "verdict": state.verdict, "phonemes": units,
                "revision": state.revision, "pitch": pitch_summary(self.pitch, state.start, state.end)}
        if self.reciter is not None:
            data["prosody"] = self._prosody(state)
        return Event("word", data, self._ms())

    def _prosody(self, state: WordState) -> dict | None:
        """The word against the reference reciter's, by the code the final report uses."""
        if self.reciter is None:
            return None
        if state.index not in self._ref_spans:
            return None
        word = compare_word(state.index, (state.start, state.end), Contour.from_pitch(self.pitch),
                            self._ref_spans[state.index], self._ref_contour)
        text = self.reference.words[state.index].text
        return word.to_dict() | {"reciter": self.reciter[0],
                                 "feedback": [prosody_feedback(f, text).model_dump() for f in word.findings]}

    def _partial_if_due(self) -> list[Event]:
        return [self._partial()] if self._samples - self._last_partial >= SAMPLE_RATE else []

    def _partial(self) -> Event:
        self._last_partial = self._samples
        done = sorted(self.words)
        return Event("partial", {"current_word": self.next_word,
                                 "words": [{"index": w, "verdict": self.words[w].verdict} for w in done]},
                     self._ms())

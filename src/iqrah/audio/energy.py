"""How loud the audio is, frame by frame: where sound starts and stops, and a voice found by its
energy where the VAD hears none. Used by the aligner (word edges), the analyzer and the stream
(speech edges, pauses) and the validators (bursts)."""

from __future__ import annotations

import numpy as np

from .decode import SAMPLE_RATE
from .vad import SpeechSegment

PAUSE_MARGIN_DB = 5.0  # a pause: energy within this of the silence floor


def frame_db(audio: np.ndarray, hop: int, win: int) -> np.ndarray:
    """Energy (dB) of every whole ``win``-sample frame of ``audio``, one every ``hop`` samples."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if x.size < win:
        return np.zeros(0)
    if hop == win:
        n = x.size // hop
        frames = x[: n * hop].reshape(n, hop)
    else:
        frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-10)


class SoundEdges:
    """Where sound starts and stops near a time: 10 ms energy against a floor set by the
    recording's own noise and peak level."""

    HOP_S = 0.01

    def __init__(self, audio: np.ndarray, sample_rate: int):
        self.db = self.frame_db(audio, sample_rate)
        if not self.db.size:
            self.db = np.full(1, -100.0)
        # silence: within 10 dB of the quietest frames, or 50 dB under the loudest; a recitation
        # may hold almost no silence, so the quietest 2 % stand for the noise floor; and always
        # 20 dB under the loudest, as a held nasal sounds 10-15 dB under the vowels
        loud = np.percentile(self.db, 99)
        self.floor = min(max(np.percentile(self.db, 2) + 10.0, loud - 50.0), loud - 20.0)
        self.dynamic_range = float(loud - np.percentile(self.db, 2))  # dB from the quiet to the loud

    @classmethod
    def frame_db(cls, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Energy (dB) of each whole 10 ms frame of ``audio``."""
        hop = int(cls.HOP_S * sample_rate)
        return frame_db(audio, hop, hop)

    def start_before(self, t: float, limit: float) -> float:
        """Walk back from ``t`` while there is sound, not past ``limit``."""
        f, stop = int(t / self.HOP_S), max(0, int(np.ceil(limit / self.HOP_S)))
        f = min(f, self.db.size)
        while f - 1 >= stop and self.db[f - 1] > self.floor:
            f -= 1
        return f * self.HOP_S

    def longest_silence(self, a: float, b: float) -> float:
        """The longest run of silence between ``a`` and ``b`` (seconds; 0 if none or unknown);
        a pause's reverberation and breath may rise a little above the floor, not to speech."""
        if not (np.isfinite(a) and np.isfinite(b)) or b <= a:
            return 0.0
        quiet = self.db[int(a / self.HOP_S): int(np.ceil(b / self.HOP_S))] <= self.floor + PAUSE_MARGIN_DB
        best = run = 0
        for q in quiet:
            run = run + 1 if q else 0
            best = max(best, run)
        return best * self.HOP_S

    def sound_frames(self) -> np.ndarray:
        """The 10 ms frames clearly above the silence floor."""
        return np.flatnonzero(self.db > self.floor + PAUSE_MARGIN_DB)

    def last_sound(self) -> float:
        """Where the last sound clearly above the silence floor ends (seconds; 0 if none)."""
        loud = self.sound_frames()
        return float((loud[-1] + 1) * self.HOP_S) if loud.size else 0.0

    def back_to_sound(self, t: float, limit: float) -> float:
        """Walk back from ``t`` over silence (a pause's reverberation may rise a little above the
        floor), not past ``limit``: where the sound before ``t`` ends."""
        f = min(int(np.ceil(t / self.HOP_S)), self.db.size)
        stop = max(0, int(np.ceil(limit / self.HOP_S)))
        while f - 1 >= stop and self.db[f - 1] <= self.floor + PAUSE_MARGIN_DB:
            f -= 1
        return f * self.HOP_S

    def end_after(self, t: float, limit: float) -> float:
        """Walk on from ``t`` while there is sound, not past ``limit``."""
        f, stop = int(np.ceil(t / self.HOP_S)), min(self.db.size, int(limit / self.HOP_S))
        while f < stop and self.db[f] > self.floor:
            f += 1
        return f * self.HOP_S


VOICE_RANGE_DB = 30.0  # a voice rises this far above the quietest frames; steady noise does not
VOICE_MIN_S = 0.5


def voice_by_energy(samples: np.ndarray, edges: SoundEdges | None = None) -> list[SpeechSegment]:
    """Silero hears no speech in some real recitations (a non-native crowd recording of 1:1 never
    passes 0.29): where the recording holds at least ``VOICE_MIN_S`` of sound with the dynamics
    of a voice, that stretch is taken as speech and the acoustic model judges it. ``edges``: the
    recording's SoundEdges, if the caller has them."""
    edges = edges or SoundEdges(samples, SAMPLE_RATE)
    frames = edges.sound_frames()
    if edges.dynamic_range < VOICE_RANGE_DB or frames.size * edges.HOP_S < VOICE_MIN_S:
        return []
    hop = int(edges.HOP_S * SAMPLE_RATE)
    return [SpeechSegment(int(frames[0]) * hop, min(samples.size, (int(frames[-1]) + 1) * hop))]

"""Waveform and spectrogram augmentation, all numpy, all driven by an explicit Generator.

Waveform (each applied with its own probability): speed perturbation (resampling: tempo and
pitch together, as in Kaldi), a small extra pitch/formant shift (resample then linear time
stretch back to the tempo), random gain, synthetic reverberation (exponentially decaying noise
impulse response), band-limiting (telephone 300-3400 Hz band-pass or 4 kHz low-pass, as codecs
and phones do) and additive white/pink/brown noise at a random SNR. Spectrogram: SpecAugment
frequency and time masks (masked values set to 0, the per-utterance mean).

``VOICES`` is a second preset for voices unlike the 8 adult male reciters of the train split
(women, children, non-native speakers, phones): an STFT-domain voice change that moves the
formants (vocal-tract length) and the pitch independently, random-cutoff band-limiting with a
spectral tilt, and more noise. ``LEARNERS`` adds, to most voice changes, an F0 factor that
wanders over time (a speaking learner's intonation instead of the chant's melody). ``SPEECH``
shortens held sounds to a speaking tempo (``squeeze_held``), ``PHONES`` adds a low-bit-rate
codec round trip (``codec_roundtrip``). The default ``AugmentConfig()`` is unchanged (the
documented recipe).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import cache

import numpy as np
import soxr
from scipy import signal

SR = 16_000


@dataclass(frozen=True)
class AugmentConfig:
    p_speed: float = 0.5
    speed: tuple[float, float] = (0.9, 1.1)
    p_pitch: float = 0.2
    pitch: tuple[float, float] = (0.94, 1.06)
    gain_db: tuple[float, float] = (-12.0, 6.0)
    p_reverb: float = 0.2
    rt60: tuple[float, float] = (0.1, 0.6)
    p_band: float = 0.25
    p_noise: float = 0.35
    snr_db: tuple[float, float] = (5.0, 30.0)
    freq_masks: int = 2
    freq_width: int = 12
    time_mask_every: int = 120  # one time mask per this many frames
    time_width: int = 15
    time_max_fraction: float = 0.15
    # voice change (off by default): formants scaled by ``formant``, F0 by ``f0``, both log-uniform
    p_voice: float = 0.0
    formant: tuple[float, float] = (0.85, 1.25)
    f0: tuple[float, float] = (0.8, 2.2)
    # band-limiting with random cutoffs and a random spectral tilt instead of the three fixed filters
    random_band: bool = False
    # with a voice change, an F0 factor that wanders over time (log-F0 std, correlation time in s):
    # a learner's speaking intonation in place of the reciter's chant
    p_intonation: float = 0.0
    intonation: tuple[float, float] = (0.05, 0.3)
    intonation_s: tuple[float, float] = (0.2, 1.0)
    # held sounds shortened towards a speaking length: between two phoneme onsets, the part
    # beyond ``held_keep_s`` from either keeps a fraction in ``held_fraction`` of its length
    p_squeeze: float = 0.0
    held_fraction: tuple[float, float] = (0.1, 0.5)
    held_keep_s: float = 0.06
    # a lossy codec round trip at a low bit rate, one of ``codecs`` (names in ``CODECS``)
    p_codec: float = 0.0
    codecs: tuple[str, ...] = ("mp3", "opus")

    def to_dict(self) -> dict:
        return asdict(self)


#: Wider voices and channels: women/children have 15-30 % higher formants and up to 2-3x the F0 of
#: the train reciters, crowd recordings are phones and laptops in ordinary rooms.
VOICES = AugmentConfig(p_speed=0.5, speed=(0.85, 1.15), p_pitch=0.0, p_voice=0.6, formant=(0.85, 1.25),
                       f0=(0.8, 2.2), p_reverb=0.25, rt60=(0.1, 0.7), p_band=0.4, random_band=True,
                       p_noise=0.5, snr_db=(3.0, 30.0))
#: VOICES, and most voice changes also change the melody (a speaking learner's intonation).
LEARNERS = replace(VOICES, p_intonation=0.7)
#: LEARNERS, and most recordings spoken rather than chanted: held sounds cut to a speaking length.
SPEECH = replace(LEARNERS, p_squeeze=0.6)
#: SPEECH, and a third of the recordings through a phone app's lossy codec.
PHONES = replace(SPEECH, p_codec=0.3)
#: PHONES with more recordings through a codec, and more codecs: AAC (phone recorder apps) and
#: AMR-NB (a phone call, 8 kHz).
HANDSETS = replace(PHONES, p_codec=0.45, codecs=("mp3", "opus", "aac", "amr"))
#: HANDSETS without shortening held sounds (needs no phoneme onsets): other voices, intonations and
#: channels for a cached copy of the train split (``iqrah_train.encode --augment channels``).
CHANNELS = replace(HANDSETS, p_squeeze=0.0)
PRESETS = {"default": AugmentConfig(), "voices": VOICES, "learners": LEARNERS, "speech": SPEECH, "phones": PHONES,
           "handsets": HANDSETS, "channels": CHANNELS}


@cache
def _filters():
    return {
        "phone": signal.butter(4, [300, 3400], btype="bandpass", fs=SR, output="sos"),
        "lowpass4k": signal.butter(6, 4000, btype="lowpass", fs=SR, output="sos"),
        "lowpass3k": signal.butter(6, 3000, btype="lowpass", fs=SR, output="sos"),
    }


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-9)


def speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (shorter, higher)."""
    return soxr.resample(audio, SR, SR / factor, quality="QQ").astype(np.float32, copy=False)


def pitch_shift(audio: np.ndarray, factor: float) -> np.ndarray:
    """Cheap pitch/formant shift by ``factor`` keeping the duration: resample, then stretch the
    waveform back by linear interpolation (the interpolation undoes the tempo change and, being
    crude, a little of the pitch change too)."""
    y = speed(audio, factor)
    if y.size < 2:
        return audio
    pos = np.linspace(0, y.size - 1, audio.size)
    return np.interp(pos, np.arange(y.size), y).astype(np.float32)


_NFFT, _HOP = 512, 128


def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]))))


def intonation_contour(n_samples: int, rng: np.random.Generator, std: float, corr_s: float) -> np.ndarray:
    """A smooth random F0 factor per voice-change frame (``_HOP`` samples): exp of low-passed
    noise with log-std ``std`` and correlation time ``corr_s``, mean factor 1."""
    n = (n_samples + 2 * _NFFT) // _HOP + 1
    alpha = np.exp(-(_HOP / SR) / corr_s)
    walk = signal.lfilter([1 - alpha], [1, -alpha], rng.standard_normal(n))
    walk = (walk - walk.mean()) / max(walk.std(), 1e-9)
    return np.exp(std * walk)


def voice_change(audio: np.ndarray, formant: float, f0: float | np.ndarray) -> np.ndarray:
    """Scale the formants by ``formant`` and the pitch by ``f0``, keeping the duration.

    Why: the train split has only adult male reciters; women and children have shorter vocal
    tracts (higher formants) and higher F0. Per STFT frame (32 ms, hop 8 ms) the log magnitude is
    split by cepstral liftering into a smooth envelope (vocal tract) and the fine structure
    (harmonics); the envelope is stretched by ``formant`` and the fine structure by ``f0`` along
    frequency. Phases follow a phase vocoder: each output bin takes the instantaneous frequency of
    its source bin times ``f0``, accumulated over frames. Crude (a little phasiness), but the model
    only sees 25 ms log-mel frames, and it costs a few ms per second of audio. ``f0`` may also be
    one factor per frame (``intonation_contour``).
    """
    n = audio.size
    if n < _NFFT:
        return audio
    win = np.hanning(_NFFT + 1)[:-1].astype(np.float32)
    pad = np.concatenate([np.zeros(_NFFT, np.float32), audio, np.zeros(_NFFT, np.float32)])
    frames = np.lib.stride_tricks.sliding_window_view(pad, _NFFT)[::_HOP] * win
    spec = np.fft.rfft(frames, axis=1)
    mag = np.abs(spec) + 1e-7
    logm = np.log(mag)
    nb = logm.shape[1]
    cep = np.fft.irfft(logm, n=_NFFT, axis=1)
    lifter = 24  # 1.5 ms: below the period of any F0 up to ~650 Hz
    cep[:, lifter:-lifter] = 0.0
    env = np.fft.rfft(cep, axis=1).real[:, :nb]
    fine = logm - env
    bins = np.arange(nb, dtype=np.float64)

    def warp(x: np.ndarray, factor: float) -> np.ndarray:  # out(f) = x(f / factor), edges held
        src = bins / factor
        lo = np.clip(np.floor(src).astype(int), 0, nb - 1)
        hi = np.clip(lo + 1, 0, nb - 1)
        w = np.clip(src - lo, 0.0, 1.0)
        return x[:, lo] * (1 - w) + x[:, hi] * w

    new_env = warp(env, formant)
    # the pitch factor per frame: one for all, or a contour
    f0 = np.broadcast_to(np.asarray(f0, dtype=np.float64).reshape(-1), (1,)) if np.ndim(f0) == 0 else \
        np.asarray(f0, dtype=np.float64)[np.minimum(np.arange(frames.shape[0]), len(f0) - 1)]
    src = bins[None, :] / f0[:, None]  # (frames or 1, bins)
    lo = np.clip(np.floor(src).astype(int), 0, nb - 1)
    hi = np.clip(lo + 1, 0, nb - 1)
    w = np.clip(src - lo, 0.0, 1.0)
    rows = np.arange(fine.shape[0])[:, None]
    lo_b, hi_b = np.broadcast_to(lo, fine.shape), np.broadcast_to(hi, fine.shape)
    new_fine = fine[rows, lo_b] * (1 - w) + fine[rows, hi_b] * w
    new_fine[np.broadcast_to(src > nb - 1, fine.shape)] = fine.min()  # no harmonics above the source's Nyquist
    # phase vocoder: instantaneous frequency of the (nearest) source bin, times f0
    phase = np.angle(spec)
    expected = 2 * np.pi * _HOP * bins / _NFFT
    dphi = np.diff(phase, axis=0, prepend=phase[:1]) - expected
    dphi = (dphi + np.pi) % (2 * np.pi) - np.pi
    inst = expected + dphi  # radians per hop
    k = np.broadcast_to(np.clip(np.rint(src).astype(int), 0, nb - 1), fine.shape)
    new_phase = np.cumsum(inst[rows, k] * f0[:, None], axis=0)
    out = np.exp(new_env + new_fine) * np.exp(1j * new_phase)
    y_frames = np.fft.irfft(out, n=_NFFT, axis=1) * win
    y = np.zeros(pad.size, np.float64)
    norm = np.zeros(pad.size, np.float64)
    for j in range(_NFFT // _HOP):  # overlap-add, vectorised per phase of the hop
        part = y_frames[j::_NFFT // _HOP]
        starts = (np.arange(part.shape[0]) * (_NFFT // _HOP) + j) * _HOP
        m = part.shape[0]
        if m == 0:
            continue
        seg = y[starts[0] : starts[0] + m * _NFFT].reshape(m, _NFFT)
        seg += part
        nseg = norm[starts[0] : starts[0] + m * _NFFT].reshape(m, _NFFT)
        nseg += win**2
    y = (y / np.maximum(norm, 1e-3))[_NFFT : _NFFT + n]
    return (y * (_rms(audio) / _rms(y))).astype(np.float32)


_WSOLA_N, _WSOLA_HOP, _WSOLA_DELTA = 512, 256, 160


def wsola(audio: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Time-scale modification that keeps the pitch (WSOLA): output sample ``k * 256`` is taken
    from near input sample ``source[k]`` (non-decreasing), each 32 ms window shifted by up to
    10 ms to continue the previous one's waveform best (cross-correlation at 8 kHz). The same
    method as ``iqrah.evaluate.tsm.time_stretch``, there at one fixed rate (its planted-error
    figures are measured with that code, so it stays as it is), here at a rate that varies."""
    n, hop, delta = _WSOLA_N, _WSOLA_HOP, _WSOLA_DELTA
    win = np.hanning(n + 2)[1:-1].astype(np.float32)
    pad = n + delta + hop
    x = np.concatenate([np.zeros(pad, np.float32), audio.astype(np.float32), np.zeros(pad, np.float32)])
    y = np.zeros(len(source) * hop + n, np.float32)
    norm = np.zeros_like(y)
    prev = -1
    for k, p in enumerate(np.asarray(source, dtype=np.int64) + pad):
        start = int(p)
        if prev >= 0:
            natural = x[prev + hop : prev + hop + n : 2]
            c = np.correlate(x[p - delta : p + delta + n : 2], natural, "valid")
            start = int(p) - delta + 2 * int(np.argmax(c))
        y[k * hop : k * hop + n] += win * x[start : start + n]
        norm[k * hop : k * hop + n] += win
        prev = start
    return (y / np.maximum(norm, 1e-3))[: len(source) * hop]


def squeeze_held(audio: np.ndarray, rng: np.random.Generator, onsets: np.ndarray,
                 fraction: tuple[float, float], keep_s: float = 0.06) -> np.ndarray:
    """Shorten held sounds to a speaking length, keeping the pitch.

    Why: the train split is chanted (madd held 4-6 harakat, long vowels, a slow tempo: about 5
    collapsed phonemes per second in the dev professional group), learners mostly speak (about 8
    per second of speech in the crowd dev groups). ``onsets`` are the times (s) where a model
    heard each new phoneme begin (``onsets.py``); between two onsets, what lies beyond the first
    and before the last ``keep_s`` is the held part, and it keeps a fraction of its length
    (log-uniform in ``fraction``, one per recording). The targets (runs collapsed) do not change.
    """
    frames = audio.size // 160
    rate = np.ones(frames)
    f = _log_uniform(rng, fraction)
    keep = keep_s / 0.01
    for a, b in zip(onsets[:-1], onsets[1:]):
        lo, hi = int(round(a / 0.01 + keep)), int(round(b / 0.01 - keep))
        if hi - lo >= 3:
            rate[lo:min(hi, frames)] = f
    out_time = np.concatenate([[0.0], np.cumsum(rate)]) * 160  # output sample at each frame edge
    in_time = np.arange(frames + 1) * 160.0
    n_out = int(out_time[-1]) + audio.size - frames * 160
    if frames == 0 or n_out > 0.98 * audio.size:
        return audio
    source = np.interp(np.arange(0, n_out, _WSOLA_HOP), out_time, in_time, right=in_time[-1])
    source += np.maximum(0, np.arange(0, n_out, _WSOLA_HOP) - out_time[-1])  # the tail, unchanged
    y = wsola(audio, np.minimum(source, audio.size - 1))
    return (y * (_rms(audio) / _rms(y))).astype(np.float32)


#: name: (PyAV encoder, container, sample rate, bit rates)
CODECS = {"mp3": ("libmp3lame", "mp3", SR, (8_000, 16_000, 24_000, 32_000)),
          "opus": ("libopus", "ogg", SR, (6_000, 8_000, 12_000, 16_000)),
          "aac": ("aac", "adts", SR, (12_000, 16_000, 24_000)),
          "amr": ("libopencore_amrnb", "amr", 8_000, (4_750, 5_900, 7_950, 10_200, 12_200))}


def codec_roundtrip(audio: np.ndarray, rng: np.random.Generator,
                    codecs: tuple[str, ...] = ("mp3", "opus")) -> np.ndarray:
    """Encode with a lossy codec at a low bit rate (one of ``codecs``, PyAV's ffmpeg, in memory)
    and decode with ``iqrah.audio.decode_audio``, as the server decodes a learner's upload.

    Why: crowd recordings come through phone apps and browsers; the model lost 3-4 pp PER on
    dev TLOG and Alafasy through Opus at 8 kbit/s and 7 pp through MP3 at 16 kbit/s, and the train
    split is all Opus at 16-32 kbit/s. The output may be longer by the encoder delay (AAC: 0.11 s)."""
    import io

    import av

    from iqrah.audio import AudioError, decode_audio, resample

    name = codecs[rng.integers(len(codecs))]
    codec, container, rate, bit_rates = CODECS[name]
    samples = audio if rate == SR else resample(audio, SR, rate)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)[None, :]
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.bit_rate = int(bit_rates[rng.integers(len(bit_rates))])
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in (*stream.encode(frame), *stream.encode(None)):
            out.mux(packet)
    try:
        return decode_audio(buf.getvalue(), sample_rate=SR)
    except AudioError:  # nothing decodable or a near-silent clip: leave it as it was
        return audio


def random_band(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Band-pass with random cutoffs (high-pass 50-400 Hz, low-pass 2.8-7 kHz) and a random
    first-order spectral tilt: phones, laptop microphones and codecs each colour the voice
    differently, and the crowd dev groups are recorded that way."""
    lo = _log_uniform(rng, (50.0, 400.0))
    hi = _log_uniform(rng, (2800.0, 7000.0))
    sos = signal.butter(int(rng.integers(2, 5)), [lo, hi], btype="bandpass", fs=SR, output="sos")
    x = signal.sosfilt(sos, audio)
    a = rng.uniform(-0.7, 0.7)  # > 0: brighter (pre-emphasis), < 0: duller
    x = signal.lfilter([1.0, -a], [1.0], x) if a > 0 else signal.lfilter([1.0 + a], [1.0, a], x)
    return (x * (_rms(audio) / _rms(x))).astype(np.float32)


def reverb(audio: np.ndarray, rng: np.random.Generator, rt60: float) -> np.ndarray:
    n = max(1, int(rt60 * SR))
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    ir[0] = 1.0 / max(0.2, rng.uniform(0.2, 1.0))  # direct path
    ir = (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)
    wet = signal.fftconvolve(audio, ir)[: audio.size]
    return (wet * (_rms(audio) / _rms(wet))).astype(np.float32)


def coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(3)
    white = rng.standard_normal(n).astype(np.float32)
    if kind == 0:
        return white
    if kind == 1:  # pink-ish: one-pole low-pass mixed with white
        return (signal.lfilter([1.0], [1.0, -0.95], white) * 0.3 + white * 0.5).astype(np.float32)
    return signal.lfilter([1.0], [1.0, -0.995], white).astype(np.float32)  # brown


def augment_audio(audio: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
                  onsets: np.ndarray | None = None) -> np.ndarray:
    """``onsets``: where each phoneme begins (s), for ``squeeze_held``; without them it is skipped."""
    x = audio.astype(np.float32, copy=True)
    if cfg.p_squeeze > 0 and onsets is not None and rng.random() < cfg.p_squeeze:
        x = squeeze_held(x, rng, onsets, cfg.held_fraction, cfg.held_keep_s)
    if rng.random() < cfg.p_speed:
        x = speed(x, rng.uniform(*cfg.speed))
    if rng.random() < cfg.p_pitch:
        x = pitch_shift(x, rng.uniform(*cfg.pitch))
    if cfg.p_voice > 0 and rng.random() < cfg.p_voice:
        f0 = _log_uniform(rng, cfg.f0)
        if cfg.p_intonation > 0 and rng.random() < cfg.p_intonation:
            f0 = f0 * intonation_contour(x.size, rng, rng.uniform(*cfg.intonation), rng.uniform(*cfg.intonation_s))
        x = voice_change(x, _log_uniform(rng, cfg.formant), f0)
    if rng.random() < cfg.p_reverb:
        x = reverb(x, rng, rng.uniform(*cfg.rt60))
    if rng.random() < cfg.p_band:
        if cfg.random_band:
            x = random_band(x, rng)
        else:
            name = ("phone", "lowpass4k", "lowpass3k")[rng.integers(3)]
            x = signal.sosfilt(_filters()[name], x).astype(np.float32)
    if rng.random() < cfg.p_noise:
        noise = coloured_noise(x.size, rng)
        snr = rng.uniform(*cfg.snr_db)
        x = x + noise * (_rms(x) / _rms(noise) * 10 ** (-snr / 20))
    if cfg.p_codec > 0 and rng.random() < cfg.p_codec:
        x = codec_roundtrip(x, rng, cfg.codecs)
    x = x * np.float32(10 ** (rng.uniform(*cfg.gain_db) / 20))
    return np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)


def spec_augment(feats: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    x = feats.copy()
    t, f = x.shape
    for _ in range(cfg.freq_masks):
        w = rng.integers(0, cfg.freq_width + 1)
        s = rng.integers(0, max(1, f - w))
        x[:, s : s + w] = 0.0
    budget = int(cfg.time_max_fraction * t)
    for _ in range(t // cfg.time_mask_every):
        w = int(min(rng.integers(0, cfg.time_width + 1), budget))
        if w <= 0:
            break
        s = rng.integers(0, max(1, t - w))
        x[s : s + w] = 0.0
        budget -= w
    return x

"""Audio in: decoding any container to 16 kHz mono, a ring buffer for streams, Silero VAD."""

from .decode import SAMPLE_RATE, AudioError, AudioLimitError, AudioLimits, NoSpeechError, decode_audio, resample
from .ring import RingBuffer
from .vad import SileroVad, SpeechSegment, VadConfig, VadStream, speech_segments

__all__ = ["SAMPLE_RATE", "AudioError", "AudioLimitError", "AudioLimits", "NoSpeechError", "RingBuffer", "SileroVad", "SpeechSegment",
           "VadConfig", "VadStream", "decode_audio", "resample", "speech_segments"]

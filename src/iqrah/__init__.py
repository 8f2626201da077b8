"""iqrah: listens to Quran recitation and says what was right and wrong.

    from iqrah import Engine
    engine = Engine()                          # the bundled model, offline, on the CPU
    report = engine.analyze("recitation.m4a", "1:2")
    stream = engine.stream("1:2")              # live: stream.feed(samples) -> events

The names below load on first use, so ``import iqrah`` stays cheap.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "Engine": ".engine",
    "AnalyzeSettings": ".config",
    "RecitationSettings": ".config",
    "Report": ".report.schema",
    "StreamingAnalyzer": ".stream",
    "Event": ".stream",
    "build_reference": ".quran",
    "UnknownAyahError": ".quran",
    "decode_audio": ".audio",
    "AudioError": ".audio",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'iqrah' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)

"""``Engine``: the package's face. One object holds the loaded models; it judges a recording
offline (``analyze``) or a recitation as it arrives (``stream``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .acoustic.base import AcousticModel
from .cache import Cache
from .config import AnalyzeSettings, RecitationSettings
from .report.schema import Report
from .stream import StreamingAnalyzer


class Engine:
    """``Engine()`` loads the bundled model (``iqrah-small``), and for live verdicts the bundled
    fast model beside it where the package has one; ``model``/``live_model`` name others
    (``muaalem:<folder>``, a path to an ``.onnx`` file) or pass loaded ``AcousticModel`` objects.
    ``threads``: onnxruntime threads per model (0: its default). Safe to share between threads
    for ``analyze``; each ``stream`` is one recitation's own object."""

    def __init__(self, model: str | AcousticModel | None = None, *, live_model: str | AcousticModel | None = None,
                 settings: AnalyzeSettings | None = None, threads: int = 0, cache: str | Cache | None = None):
        """``cache``: the reference cache (``iqrah.cache.open_cache`` address or object) that
        holds the reference reciters ``iqrah reference build`` measured; default: IQRAH_CACHE,
        else the SQLite file under the user's data folder, opened when a reciter is asked for."""
        from .acoustic.registry import live_model_name, load_model

        self.model = model if isinstance(model, AcousticModel) else load_model(model, threads=threads)
        if live_model is None and not isinstance(model, AcousticModel):
            live_model = live_model_name(model)
        self.live_model = (live_model if isinstance(live_model, AcousticModel)
                           else load_model(live_model, threads=threads) if live_model else self.model)
        self.settings = settings or AnalyzeSettings()
        self._cache = cache

    def analyze(self, audio: str | Path | bytes | np.ndarray, ayah: str, *,
                recitation: RecitationSettings | None = None, reciter: str | None = None) -> Report:
        """Judge a whole recording (a path, file bytes, or 16 kHz mono float samples) of ``ayah``
        (``"1:2"``, ``"2:255-257"``, ``"2:255:3-5"``); ``reciter``: a reference reciter to compare
        tempo, rhythm and melody with (``Report.prosody``). Raises ``AudioError`` for unusable
        audio, ``UnknownAyahError`` for a spec that names no ayah, and ``UnknownReciterError`` (a
        LookupError) for a reciter the cache holds no recording of this ayah of; a range or a
        word span goes without prosody (the recordings are per ayah), as on the server."""
        from .analyze import analyze

        return analyze(audio, ayah, self._settings(recitation), self.model, reciter=self._reciter(reciter, ayah))

    def stream(self, ayah: str, *, recitation: RecitationSettings | None = None,
               reciter: str | None = None) -> StreamingAnalyzer:
        """A live assessment of one recitation of ``ayah``: ``feed(samples)`` returns events
        (words and violations as they are judged), ``flush()`` and ``finish()`` end it (the
        final report, by the same judge as ``analyze``)."""
        return StreamingAnalyzer(ayah, self._settings(recitation), self.live_model, final_model=self.model,
                                 reciter=self._reciter(reciter, ayah))

    def _reciter(self, name: str | None, ayah: str) -> tuple[str, dict] | None:
        if name is None:
            return None
        from .cache import open_cache
        from .reciters import find_reciter, model_key

        if not isinstance(self._cache, Cache):
            self._cache = open_cache(self._cache)
        return find_reciter(self._cache, name, ayah, model_key(self.model))

    def _settings(self, recitation: RecitationSettings | None) -> AnalyzeSettings:
        if recitation is None:
            return self.settings
        from dataclasses import replace

        return replace(self.settings, recitation=recitation)

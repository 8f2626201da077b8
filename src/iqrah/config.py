"""Explicit configuration objects (no globals): how the learner is expected to recite."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from quran_transcript import MoshafAttributes

from .audio.decode import AudioLimits


@dataclass(frozen=True)
class RecitationSettings:
    """The recitation the reference describes: Hafs 'an 'Asim, with configurable madd lengths.

    Lengths are in harakat (counts). Defaults are the common Hafs choice for murattal
    recitation. ``extra`` passes any other ``quran_transcript.MoshafAttributes`` field
    (e.g. ``{"sakt_iwaja": "sakt"}``) straight to the phonetizer.
    """

    madd_monfasel: int = 4
    madd_mottasel: int = 4
    madd_mottasel_waqf: int = 4
    madd_aared: int = 4
    madd_leen: int | None = None  # None: same as madd_aared, as the phonetizer does
    recitation_speed: str = "murattal"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_moshaf(self) -> MoshafAttributes:
        """The phonetizer's settings object; raises pydantic's ValueError on invalid values."""
        return MoshafAttributes(
            rewaya="hafs",
            recitation_speed=self.recitation_speed,
            madd_monfasel_len=self.madd_monfasel,
            madd_mottasel_len=self.madd_mottasel,
            madd_mottasel_waqf=self.madd_mottasel_waqf,
            madd_aared_len=self.madd_aared,
            madd_alleen_len=self.madd_leen,
            **self.extra,
        )

    @classmethod
    def from_madd(cls, madd_monfasel: int = 4, madd_mottasel: int = 4, madd_aared: int = 4) -> RecitationSettings:
        """The settings a learner chooses (the three madd lengths, the connected madd kept at a
        stop too), validated by the phonetizer: ValueError("invalid recitation settings: ...")
        names each bad value."""
        from pydantic import ValidationError

        settings = cls(madd_monfasel=madd_monfasel, madd_mottasel=madd_mottasel,
                       madd_mottasel_waqf=madd_mottasel, madd_aared=madd_aared)
        try:
            settings.to_moshaf()
        except ValidationError as exc:
            raise ValueError("invalid recitation settings: " + "; ".join(
                f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None
        return settings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __hash__(self) -> int:  # ``extra`` is a dict; hash its sorted items so caches can key on us
        return hash(tuple(sorted((k, repr(v)) for k, v in self.to_dict().items())))


@dataclass(frozen=True)
class AnalyzeSettings:
    """How one recording is judged: the recitation expected, the scoring profile, the content gate."""

    recitation: RecitationSettings = field(default_factory=RecitationSettings)
    profile: str = "beginner"
    #: PER of free decoding above which the recording is not this ayah; None: the model's own
    #: recommendation (its card's ``gate_per``), else 8 %
    gate_per: float | None = None
    #: "auto" picks whichever of with/without basmala the recording matches for an ayah 1
    basmala: str = "auto"
    limits: AudioLimits = field(default_factory=AudioLimits)

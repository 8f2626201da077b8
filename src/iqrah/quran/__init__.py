"""The expected recitation: Uthmani text, phoneme units, sifat and tajweed rules."""

from .reference import PhonemeUnit, Reference, Word, build_reference, reference_from_text
from .rules import Rule
from .text import AyahSpec, UnknownAyahError, ayah_count, parse_spec

__all__ = ["AyahSpec", "PhonemeUnit", "Reference", "Rule", "UnknownAyahError", "Word",
           "ayah_count", "build_reference", "parse_spec", "reference_from_text"]

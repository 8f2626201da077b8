"""Forced alignment of a reference to acoustic-model frames."""

from .ctc import Alignment, AlignmentError, forced_align, min_frames

__all__ = ["Alignment", "AlignmentError", "forced_align", "min_frames"]

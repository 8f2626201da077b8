"""iqrah: listens to Quran recitation and says what was right and wrong."""

__version__ = "0.1.0"

"""Judging a recitation: content check and one tajweed validator per module."""

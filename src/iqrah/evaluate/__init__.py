"""Measuring iqrah on labelled recordings: accuracy of the acoustic model and the aligner."""

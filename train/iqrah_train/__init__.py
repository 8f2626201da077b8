"""Training recipe for iqrah's small bundled phoneme CTC acoustic model (see docs/model.md)."""

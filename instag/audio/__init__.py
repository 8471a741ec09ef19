"""Per-frame audio features: log-mel (librosa, no weights) and hubert / wav2vec2 (transformers, local path only)."""

"""Virtual repos: checkpoints described by a small spec whose bytes are computed, not stored."""

"""pytest fixtures that build tiny models, fine-tunes and mergekit merges (owned by the scan work)."""

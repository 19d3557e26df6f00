"""Suite-wide setup: no telemetry, a private HF cache and data folder, and the shared fixture modules."""

from __future__ import annotations

import os
import tempfile

# Set before huggingface_hub is imported anywhere: no telemetry calls, no user cache.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="provbot-hf-home-"))
os.environ.pop("HF_TOKEN", None)
# provbot's default database and caches go to a private folder, never the user's data directory.
os.environ["PROVBOT_DATA_DIR"] = tempfile.mkdtemp(prefix="provbot-data-")
os.environ.pop("PROVBOT_DATABASE_URL", None)

pytest_plugins = ["tests.support.localhub", "tests.support.models"]

"""Suite-wide setup: no telemetry, a private HF cache, and the shared fixture modules."""

from __future__ import annotations

import os
import tempfile

# Set before huggingface_hub is imported anywhere: no telemetry calls, no user cache.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="provbot-hf-home-"))
os.environ.pop("HF_TOKEN", None)
# The bot keeps Hub headers on disk (var/header-cache by default): not in the checkout during tests.
os.environ.setdefault("PROVBOT_HEADER_CACHE_DIR", tempfile.mkdtemp(prefix="provbot-headers-"))

pytest_plugins = ["tests.support.localhub", "tests.support.models"]

"""The Hub client: one typed way to talk to the Hugging Face Hub (or the local Hub server).

>>> from provbot.detectors.hub import HubClient, RetryPolicy
>>> HubClient("http://127.0.0.1:9", retry=RetryPolicy(max_wait_s=60)).retry.max_wait_s
60
"""

from provbot.detectors.hub.card import Declared, declared_from_card, declared_from_hub
from provbot.detectors.hub.client import PICKLE_SUFFIXES, HubClient, default_endpoint
from provbot.detectors.hub.error_map import Call
from provbot.detectors.hub.models import Discussion, DiscussionDetails, DiscussionEvent, ModelInfo, Sibling
from provbot.detectors.hub.repo_ids import is_repo_id, is_revision, parse_ref, validate_repo_id
from provbot.detectors.hub.retry import HubStats, RetryPolicy

__all__ = [
    "PICKLE_SUFFIXES",
    "Call",
    "Declared",
    "Discussion",
    "DiscussionDetails",
    "DiscussionEvent",
    "HubClient",
    "HubStats",
    "ModelInfo",
    "RetryPolicy",
    "Sibling",
    "declared_from_card",
    "declared_from_hub",
    "default_endpoint",
    "is_repo_id",
    "is_revision",
    "parse_ref",
    "validate_repo_id",
]

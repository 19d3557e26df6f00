"""A local Hugging Face Hub server for tests, demos and benchmarks.

Serves repos stored as folders (``ROOT/<org>/<name>/``) over real HTTP on loopback, speaking the
Hub's API so that the real ``huggingface_hub`` client works against it unmodified. See
docs/localhub.md for the supported routes.

>>> import tempfile
>>> from provbot.bot.localhub import running_hub
>>> with running_hub(tempfile.mkdtemp()) as hub:
...     _ = hub.add_repo("acme/tiny", {"README.md": "---\\nbase_model: org/base\\n---\\n"})
...     hub.url.startswith("http://127.0.0.1:")
True
"""

from provbot.bot.localhub.models import FaultRule, RepoConfig, ServerOptions, WebhookTarget
from provbot.bot.localhub.server import LocalHub, LocalHubError, running_hub

__all__ = [
    "FaultRule",
    "LocalHub",
    "LocalHubError",
    "RepoConfig",
    "ServerOptions",
    "WebhookTarget",
    "running_hub",
]

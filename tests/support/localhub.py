"""pytest fixtures for the local Hub server (owned by the localhub work).

- ``localhub_root``: an empty folder for repos (per test).
- ``localhub``: a started :class:`provbot.bot.localhub.LocalHub` on that folder (per test), stopped after;
  ``.url``, ``.root``, ``.add_repo(repo_id, folder_or_files)``, ``.update_repo``, ``.inject``,
  ``.rate_limit``, ``.slow``, ``.shape``, ``.add_token``, ``.add_webhook``, ``.set_repo_config``.
- ``localhub_session``: one server for the whole session (faster for read-only use); faults,
  shaping, tokens and webhooks are reset after every test that uses it, repos are kept.
- ``hf_api``: ``HfApi(endpoint=localhub.url, token=False)`` for the per-test server.

Example::

    def test_info(localhub, hf_api):
        localhub.add_repo("acme/tiny", {"config.json": "{}"})
        assert hf_api.model_info("acme/tiny").id == "acme/tiny"
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provbot.bot.localhub import LocalHub


@pytest.fixture
def localhub_root(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    root.mkdir()
    return root


@pytest.fixture
def localhub(localhub_root: Path) -> Iterator[LocalHub]:
    hub = LocalHub(localhub_root).start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="session")
def _localhub_session_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    hub = LocalHub(tmp_path_factory.mktemp("hub-session")).start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def localhub_session(_localhub_session_server: LocalHub) -> Iterator[LocalHub]:
    hub = _localhub_session_server
    try:
        yield hub
    finally:
        hub.clear_faults()
        hub.shape(0.0, None)
        hub.options.tokens.clear()
        hub.options.webhooks.clear()
        hub.options.redirect_resolve = False
        hub.options.cdn_host = None
        hub.options.cdn_expiry_s = 3600
        hub.options.quotas = {}
        hub.options.rate_windows = False
        hub.options.pro_users = []
        hub.options.time_scale = 1.0


@pytest.fixture
def hf_api(localhub: LocalHub):
    from huggingface_hub import HfApi

    return HfApi(endpoint=localhub.url, token=False)

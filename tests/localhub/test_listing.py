"""GET /api/models through HfApi.list_models: sort, limit, expand, filters, cursor pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from huggingface_hub import HfApi
from huggingface_hub.utils import get_session

from tests.localhub.helpers import single_repo

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def populated(localhub):
    # 7 repos, created an hour apart; likes and downloads in a different order.
    for i in range(7):
        localhub.add_repo(
            f"org{i % 2}/model-{i}",
            single_repo(seed=i),
            created_at=T0 + timedelta(hours=i),
            config={"likes": (i * 3) % 7, "downloads": 100 - i},
        )
    localhub.options.page_size = 3  # force several pages
    return localhub


def test_sort_newest_first_across_pages(populated, hf_api: HfApi) -> None:
    models = list(hf_api.list_models(sort="created_at"))
    assert [m.id.split("-")[1] for m in models] == ["6", "5", "4", "3", "2", "1", "0"]
    assert models[0].created_at == T0 + timedelta(hours=6)
    likes = [m.likes for m in hf_api.list_models(sort="likes")]
    assert likes == sorted(likes, reverse=True)
    downloads = [m.downloads for m in hf_api.list_models(sort="downloads")]
    assert downloads == sorted(downloads, reverse=True)


def test_link_header_and_cursor(populated) -> None:
    r = get_session().get(f"{populated.url}/api/models", params={"sort": "createdAt"})
    assert len(r.json()) == 3
    next_url = r.links["next"]["url"]
    assert "cursor=" in next_url and "sort=createdAt" in next_url
    # A repo created after page 1 was served must not shift page 2 (keyset pagination).
    populated.add_repo("late/comer", single_repo(), created_at=T0 + timedelta(days=1))
    page2 = get_session().get(next_url).json()
    assert [m["id"] for m in page2] == ["org1/model-3", "org0/model-2", "org1/model-1"]
    assert get_session().get(f"{populated.url}/api/models", params={"cursor": "!!"}).status_code == 400


def test_limit_author_search_filter(populated, hf_api: HfApi) -> None:
    assert len(list(hf_api.list_models(limit=5))) == 5
    assert {m.id for m in hf_api.list_models(author="org1")} == {"org1/model-1", "org1/model-3", "org1/model-5"}
    assert [m.id for m in hf_api.list_models(search="DEL-4")] == ["org0/model-4"]
    assert len(list(hf_api.list_models(filter="base_model:org/base-a"))) == 7
    assert list(hf_api.list_models(filter="nope")) == []
    assert len(list(hf_api.list_models(num_parameters="min:100,max:1K"))) == 7
    assert list(hf_api.list_models(num_parameters="min:1M")) == []
    populated.set_repo_config("org0/model-2", gated="auto")
    assert [m.id for m in hf_api.list_models(gated=True)] == ["org0/model-2"]
    assert len(list(hf_api.list_models(gated=False))) == 6


def test_expand_returns_only_requested_fields(populated, hf_api: HfApi) -> None:
    m = next(iter(hf_api.list_models(sort="last_modified", expand=["sha", "safetensors", "cardData", "createdAt"])))
    assert m.sha and m.safetensors.total == 320 and m.card_data.base_model_relation == "merge"
    assert m.downloads is None and m.siblings is None and m.config is None
    plain = next(iter(hf_api.list_models()))
    assert plain.downloads is not None and plain.sha is None  # default fields, as the Hub
    full = next(iter(hf_api.list_models(full=True, fetch_config=True)))
    assert full.sha and full.siblings and full.config["model_type"] == "llama"


def test_children_count_and_private_repos(populated, hf_api: HfApi) -> None:
    populated.add_repo("org/base-a", {"config.json": "{}"})
    base = next(iter(hf_api.list_models(search="base-a", expand=["childrenModelCount"])))
    assert base.children_model_count == 7
    populated.add_token("tok-org9", "org9")
    populated.add_repo("org9/hidden", {"config.json": "{}"}, config={"private": True})
    assert "org9/hidden" not in {m.id for m in hf_api.list_models()}
    mine = HfApi(endpoint=populated.url, token="tok-org9")
    assert "org9/hidden" in {m.id for m in mine.list_models(author="org9")}

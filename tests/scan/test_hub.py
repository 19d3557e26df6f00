"""Scans over real HTTP against the project's local Hub server (range requests, revisions, 404)."""

from __future__ import annotations

import pytest

from provbot.detectors import scan
from provbot.detectors.errors import NotFoundError

pytestmark = pytest.mark.slow


@pytest.fixture
def hub_models(localhub, model_zoo):
    for name in ("llama_linear_sharded", "llama_a", "llama_b", "llama_base", "llama_c"):
        localhub.add_repo(f"acme/{name}", model_zoo.path(name))
    return localhub


def test_sharded_merge_through_the_hub(hub_models, model_zoo):
    result = scan(
        "acme/llama_linear_sharded@main",
        ["acme/llama_a", "acme/llama_b", "acme/llama_base"],
        endpoint=hub_models.url,
        budget_mb=0.05,
    )
    assert (result.relation, result.method) == ("merge", "linear")
    w = {p.ref: p.weight for p in result.parents}
    assert w == pytest.approx({"acme/llama_a": 0.6, "acme/llama_b": 0.4}, abs=0.02)
    assert result.child == "acme/llama_linear_sharded@main"  # echoed as given
    assert all(result.requests[r] > 0 for r in result.requests)
    # Hub header reads fetch a 100 KB prefix per file, large next to these 380 KB models: compare
    # the unsharded parents' reads with their file size.
    size = (model_zoo.path("llama_a") / "model.safetensors").stat().st_size
    assert all(0 < result.bytes_read[r] < 0.5 * size for r in ("acme/llama_a", "acme/llama_b", "acme/llama_base"))


def test_sibling_through_the_hub_is_finetune_of_base(hub_models):
    result = scan("acme/llama_c", ["acme/llama_a"], base="acme/llama_base", endpoint=hub_models.url)
    assert result.relation == "finetune"
    assert [p.ref for p in result.parents] == ["acme/llama_base"]


def test_missing_repo_is_a_clear_error(hub_models):
    with pytest.raises(NotFoundError):
        scan("acme/nope", ["acme/llama_a"], endpoint=hub_models.url)


def test_cli_through_the_hub_and_a_private_repo(hub_models, model_zoo):
    import json

    from tests.scan.test_cli import assert_one_line_error, run_cli

    proc = run_cli(
        "acme/llama_c", "--parent", "acme/llama_a", "--base", "acme/llama_base", "--json", "--endpoint", hub_models.url
    )
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["relation"] == "finetune" and [p["ref"] for p in obj["parents"]] == ["acme/llama_base"]

    hub_models.add_repo("acme/secret", model_zoo.path("llama_a"), config={"private": True})
    proc = run_cli("acme/secret", "--parent", "acme/llama_base", "--json", "--endpoint", hub_models.url)
    assert_one_line_error(proc, "acme/secret")  # the Hub answers 401/404: one line, exit 2

"""Hub sources against the project's local Hub server (real HTTP on loopback)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from pydantic import SecretStr

from provbot.detectors.errors import AccessDeniedError, NotFoundError, RemoteError, UnreachableError, WeightFormatError
from provbot.detectors.hub import RetryPolicy
from provbot.detectors.weights.opening import open_source
from provbot.detectors.weights.reader import canonical_models, read_sample, read_samples
from provbot.detectors.weights.sampling import plan_sample
from provbot.detectors.weights.sources import HubSource, LocalSource
from tests.weights.builders import dense_state, raw_safetensors, write_model

BUDGET = 16 * 1024


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("hubsrc") / "m", dense_state(seed=3), prefix="model.", shards=2)


def _fast(repo: str, hub, **kw) -> HubSource:
    # Short backoff so retry tests stay quick; the bounds are what is under test.
    retry = RetryPolicy(backoff_s=0.01, max_wait_s=0.05, max_retries=kw.pop("max_retries", 4))
    return HubSource(repo, endpoint=hub.url, retry=retry, **kw)


def test_hub_reads_match_local_reads(localhub_session, model_dir):
    sha = localhub_session.add_repo("acme/sharded", model_dir)
    hub = open_source("acme/sharded", endpoint=localhub_session.url, concurrency=4)
    assert hub.sha == sha  # every read is pinned to this commit
    assert hub.config() == {"model_type": "llama"}
    local = LocalSource(model_dir)
    plan = plan_sample(canonical_models([hub, local]), BUDGET)
    both = read_samples([hub, local], plan)
    got, want = both[hub.ref], both[local.ref]
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in got)
    # Index + two shard headers + range requests; bytes are headers plus the planned data.
    data = plan.planned_bytes(hub.ref)
    assert hub.requests >= 4 + len(plan.tensors) // 2
    assert data < hub.bytes_read <= data + 2 * 100_000 + 10_000


def test_redirected_resolve_is_followed(localhub_session, model_dir):
    localhub_session.add_repo("acme/redirected", model_dir)
    localhub_session.options.redirect_resolve = True
    hub = open_source("acme/redirected@main", endpoint=localhub_session.url)
    local = LocalSource(model_dir)
    plan = plan_sample(canonical_models([hub, local]), BUDGET)
    got, want = read_sample(hub, plan), read_sample(local, plan)
    assert all(torch.equal(got[k], want[k]) for k in got)


def test_long_header_takes_a_second_request(localhub_session, tmp_path):
    names = {
        f"layers.{i}.a_rather_long_module_name_to_make_the_header_big.weight": torch.full((2,), float(i))
        for i in range(1500)
    }
    folder = write_model(tmp_path / "long", names)
    assert int.from_bytes((folder / "model.safetensors").read_bytes()[:8], "little") > 100_000
    localhub_session.add_repo("acme/long", folder)
    hub = open_source("acme/long", endpoint=localhub_session.url)
    assert len(hub.tensors()) == 1500
    assert hub.requests == 3  # model info, the first 100 KB, then the rest of the header
    plan = plan_sample(canonical_models([hub]), None, full=True)
    sample = read_sample(hub, plan)
    assert torch.equal(
        sample["layers.7.a_rather_long_module_name_to_make_the_header_big.weight"], torch.full((2,), 7.0)
    )


def test_further_shards_read_their_long_headers_in_one_request_each(localhub_session, tmp_path):
    names = {
        f"layers.{i}.a_rather_long_module_name_to_make_the_header_big.weight": torch.full((2,), float(i))
        for i in range(4500)
    }
    folder = write_model(tmp_path / "long3", names, shards=3)
    localhub_session.add_repo("acme/long3", folder)
    hub = open_source("acme/long3", endpoint=localhub_session.url)
    assert len(hub.tensors()) == 4500
    # Model info; the first shard's first 100 KB, then the rest of its header; then each other
    # shard's header whole, guessed from the first one's length.
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    lengths = [int.from_bytes((folder / name).read_bytes()[:8], "little") for name in shards]
    assert lengths[0] > 100_000
    assert max(lengths) < 1.25 * lengths[0]
    assert hub.requests == 3 + len(shards) - 1
    assert LocalSource(folder).tensors().keys() == hub.tensors().keys()


def test_missing_repo_revision_and_file(localhub_session, model_dir, tmp_path):
    url = localhub_session.url
    with pytest.raises(NotFoundError, match=f"repo acme/nope not found on {url}"):
        open_source("acme/nope", endpoint=url)
    localhub_session.add_repo("acme/present", model_dir)
    with pytest.raises(NotFoundError, match="revision v9 not found in repo acme/present"):
        open_source("acme/present@v9", endpoint=url)
    # An index naming a shard the repo lacks.
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    localhub_session.add_repo("acme/broken", {"model.safetensors.index.json": json.dumps(index)})
    with pytest.raises(NotFoundError, match="shard model-0000.-of-00002.safetensors named in"):
        open_source("acme/broken", endpoint=url).tensors()
    localhub_session.add_repo("acme/pickles", {"config.json": "{}", "pytorch_model.bin": b"not read"})
    with pytest.raises(NotFoundError, match="no safetensors weights"):
        open_source("acme/pickles", endpoint=url).tensors()


def test_malformed_remote_header(localhub_session, tmp_path):
    path = raw_safetensors(
        tmp_path / "bad" / "model.safetensors",
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
        b"\0" * 4,
    )
    localhub_session.add_repo("acme/bad", path.parent)
    with pytest.raises(WeightFormatError, match="acme/bad/model.safetensors.*past the end"):
        open_source("acme/bad", endpoint=localhub_session.url).tensors()
    localhub_session.add_repo("acme/empty", {"model.safetensors": b""})
    with pytest.raises(WeightFormatError, match="acme/empty/model.safetensors"):
        open_source("acme/empty", endpoint=localhub_session.url).tensors()


def test_private_and_gated_repos_need_a_token_which_is_never_logged(localhub_session, model_dir, caplog):
    secret = "hf_localtestsecret123"
    localhub_session.add_token(secret, "alice")
    localhub_session.add_repo("acme/private", model_dir, config={"private": True, "members": ["alice"]})
    localhub_session.add_repo("acme/gated", model_dir, config={"gated": "auto", "members": ["alice"]})
    url = localhub_session.url
    with pytest.raises(AccessDeniedError, match="acme/private"):
        open_source("acme/private", endpoint=url)
    with pytest.raises(AccessDeniedError, match="acme/gated|model-0000"):
        open_source("acme/gated", endpoint=url).tensors()
    caplog.set_level(logging.DEBUG)
    for repo in ("acme/private", "acme/gated"):
        src = open_source(repo, endpoint=url, token=SecretStr(secret))
        plan = plan_sample(canonical_models([src]), BUDGET)
        assert read_sample(src, plan)
    with pytest.raises(AccessDeniedError) as err:
        open_source("acme/private", endpoint=url, token="hf_wrong_token_456")
    assert "hf_wrong_token_456" not in str(err.value)
    assert secret not in caplog.text and secret not in repr(src.__dict__.get("_api"))


def test_rate_limits_and_server_errors_are_retried(localhub_session, model_dir):
    localhub_session.add_repo("acme/flaky", model_dir)
    localhub_session.rate_limit("/api/models/acme/flaky", count=1, reset_s=0)
    localhub_session.inject("/acme/flaky/resolve/", status=503, count=2)
    src = _fast("acme/flaky", localhub_session)
    assert len(src.tensors()) == len(dense_state())
    assert localhub_session.faults.pending() == 0
    assert src.requests >= 3 + 2  # index + two headers, plus two retried 503s


def test_persistent_errors_give_up_after_bounded_retries(localhub_session, model_dir):
    localhub_session.add_repo("acme/down", model_dir)
    src = _fast("acme/down", localhub_session, max_retries=2)
    localhub_session.inject("/acme/down/resolve/", status=500, count=50)
    with pytest.raises(RemoteError, match=r"after 3 tries \(HTTP 500\)"):
        src.tensors()
    # Three tries per shard header (the two shards are read concurrently), never more.
    assert 50 - localhub_session.faults.pending() in (3, 6)
    localhub_session.clear_faults()


def test_unreachable_endpoint_fails_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    with pytest.raises(UnreachableError, match=f"cannot reach http://127.0.0.1:{port}"):
        HubSource("acme/x", endpoint=f"http://127.0.0.1:{port}", retry=RetryPolicy(max_retries=3, backoff_s=10))


class _NoRangeHandler(BaseHTTPRequestHandler):
    """A minimal Hub that ignores Range and answers 200 with the whole file, as some CDNs do."""

    blob = b""

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/api/models/"):
            body = json.dumps(
                {"id": "acme/norange", "sha": "a" * 40, "siblings": [{"rfilename": "model.safetensors"}]}
            ).encode()
        else:
            body = self.blob
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader stops once it has the bytes it asked for

    def log_message(self, *args: object) -> None:
        pass


def test_full_body_answer_to_a_range_request_is_sliced(tmp_path):
    # bot/localhub always honours Range; this server stands in for CDNs that do not.
    state = dense_state(seed=5)
    folder = write_model(tmp_path / "m", state)
    _NoRangeHandler.blob = (folder / "model.safetensors").read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoRangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hub = HubSource("acme/norange", endpoint=f"http://127.0.0.1:{server.server_port}")
        local = LocalSource(folder)
        plan = plan_sample(canonical_models([hub, local]), BUDGET)
        got, want = read_sample(hub, plan), read_sample(local, plan)
        assert all(torch.equal(got[k], want[k]) for k in got)
    finally:
        server.shutdown()
        server.server_close()


def test_oversized_json_is_refused(localhub_session, model_dir, monkeypatch):
    from provbot.detectors.weights import sources

    monkeypatch.setattr(sources, "MAX_JSON_BYTES", 100)
    localhub_session.add_repo("acme/bigindex", _nonstandard_shards(model_dir))
    with pytest.raises(WeightFormatError, match="model.safetensors.index.json.*larger than 100 bytes"):
        open_source("acme/bigindex", endpoint=localhub_session.url).tensors()


def _nonstandard_shards(model_dir) -> dict[str, bytes]:
    """The model's files with shards renamed off the model-0000i-of-0000N pattern: the index is needed."""
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    names = {old: f"part-{i}.safetensors" for i, old in enumerate(sorted(set(index["weight_map"].values())))}
    index["weight_map"] = {k: names[v] for k, v in index["weight_map"].items()}
    files = {names.get(p.name, p.name): p.read_bytes() for p in model_dir.iterdir()}
    files["model.safetensors.index.json"] = json.dumps(index).encode()
    return files


def test_complete_shard_series_is_read_without_the_index(localhub_session, model_dir):
    files = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    index = files.pop("model.safetensors.index.json")
    localhub_session.add_repo("acme/series", {**files, "model.safetensors.index.json": b"not json"})
    # The shard headers say where every tensor is; the (here broken) index is never fetched.
    names = set(open_source("acme/series", endpoint=localhub_session.url).tensors())
    assert names == set(json.loads(index)["weight_map"])


def test_nonstandard_shards_are_found_through_the_index(localhub_session, model_dir):
    localhub_session.add_repo("acme/parts", _nonstandard_shards(model_dir))
    src = open_source("acme/parts", endpoint=localhub_session.url)
    assert src.files() == ["part-0.safetensors", "part-1.safetensors"]
    assert set(src.tensors()) == set(LocalSource(model_dir).tensors())


def test_large_reads_are_split_into_concurrent_requests(localhub_session, model_dir):
    localhub_session.add_repo("acme/split", model_dir)
    hub = open_source("acme/split", endpoint=localhub_session.url, concurrency=4)
    hub.split_bytes = 8000
    plan = plan_sample(canonical_models([hub]), None, full=True)
    before = hub.requests
    got = read_sample(hub, plan)
    want = read_sample(LocalSource(model_dir), plan_sample(canonical_models([LocalSource(model_dir)]), None, full=True))
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert hub.requests - before >= sum(t.n_elements * 4 for t in plan.tensors) // 8000


def test_big_reads_land_in_aligned_buffers_locally_and_over_http(localhub_session, model_dir, monkeypatch):
    import provbot.detectors.weights.buffers as buffers
    from provbot.detectors.weights.reader import iter_full_batches

    # Every read counts as big here: the bench model's batches are megabytes, these are kilobytes.
    monkeypatch.setattr(buffers, "ALIGNED_MIN_BYTES", 1)
    localhub_session.add_repo("acme/aligned", model_dir)
    hub = open_source("acme/aligned", endpoint=localhub_session.url)
    local = LocalSource(model_dir)
    plan = plan_sample(canonical_models([hub, local]), None, full=True)
    batches = list(iter_full_batches([hub, local], plan, device="cpu"))
    assert batches
    for b in batches:
        got, want = b.values[hub.ref], b.values[local.ref]
        assert torch.equal(got, want)
        # Aligned as torch's own tensors are: the compiled kernels then run one (faster) graph.
        assert got.data_ptr() % buffers.ALIGNMENT == 0 and want.data_ptr() % buffers.ALIGNMENT == 0


def test_the_cli_asks_no_host_but_its_endpoint(localhub_session, model_dir, tmp_path):
    """huggingface_hub would fetch an agent registry from huggingface.co before its first request; the
    provbot CLI turns that off for its own process (the library leaves the process as it is)."""
    import os
    import subprocess
    import sys

    localhub_session.add_repo("acme/quiet", model_dir)
    localhub_session.add_repo("acme/quiet-parent", model_dir)
    code = (
        "import sys\n"
        "from provbot.bot import cli\n"
        f"sys.argv = ['provbot', 'scan', 'acme/quiet', '--parent', 'acme/quiet-parent', '--json', "
        f"'--endpoint', {localhub_session.url!r}]\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "import huggingface_hub.constants as c, huggingface_hub.utils._detect_agent as d\n"
        "print(c.HF_HUB_DISABLE_TELEMETRY, d._registry is None, file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_TELEMETRY", "DISABLE_TELEMETRY")}
    env["HF_HOME"] = str(tmp_path / "hf-home")  # no cached registry either
    env["PROVBOT_DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite'}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert '"relation": "copy"' in out.stdout.replace('":"', '": "')
    assert out.stderr.split()[-2:] == ["True", "True"]


def test_an_answer_from_another_commit_is_refused(tmp_path):
    from provbot.detectors.errors import BadAnswerError
    from tests.hub.scripted import Answer, ScriptedServer

    blob = (write_model(tmp_path / "m", dense_state(seed=6)) / "model.safetensors").read_bytes()
    info = {"id": "acme/moving", "sha": "a" * 40, "siblings": [{"rfilename": "model.safetensors"}]}
    with ScriptedServer() as hub:
        hub.script("/api/models/acme/moving", Answer(200, json.dumps(info).encode()))
        # The repo moved on: its files now answer from another commit than model_info pinned.
        hub.script("/acme/moving/resolve/", Answer(200, blob, {"X-Repo-Commit": "b" * 40}))
        with pytest.raises(BadAnswerError, match="from commit bbbbbbbbbbbb, not the pinned one"):
            HubSource("acme/moving", endpoint=hub.url).tensors()
        hub.script("/acme/moving/resolve/", Answer(200, blob, {"X-Repo-Commit": "a" * 40}))
        assert HubSource("acme/moving", endpoint=hub.url).tensors()


def test_known_model_info_saves_the_api_call(localhub_session, model_dir):
    from provbot.detectors.hub import HubClient

    localhub_session.add_repo("acme/known", model_dir)
    client = HubClient(localhub_session.url)
    info = client.model_info("acme/known")
    before = client.stats.requests
    src = HubSource("acme/known", client=client, info=info)
    assert client.stats.requests == before and src.sha == info.sha and src.tensors()

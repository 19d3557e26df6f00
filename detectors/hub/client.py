"""HubClient: every call provbot makes to the Hugging Face Hub, typed, with one error map.

Reads are retried on 5xx/timeouts, wait out short rate limits and fail fast on the rest (see
:mod:`provbot.detectors.hub.error_map`); writes are sent again only after a 429. Every answer is
validated into :mod:`provbot.detectors.hub.models`.

>>> client = HubClient("http://127.0.0.1:9", token="hf_xxx", retry=RetryPolicy(max_retries=0))
>>> client.file_url("org/x", "config.json", revision="main")
'http://127.0.0.1:9/org/x/resolve/main/config.json'
>>> client                                                     # the token never shows
HubClient('http://127.0.0.1:9', token=set)
>>> client.model_info("org/x")                                 # doctest: +SKIP
ModelInfo(id='org/x', sha='1f0c...', ...)
"""

from __future__ import annotations

import fnmatch
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from provbot.detectors.errors import NotFoundError
from provbot.detectors.hub.error_map import Call, bad_answer
from provbot.detectors.hub.models import (
    Discussion,
    DiscussionDetails,
    DiscussionEvent,
    DiscussionPage,
    ModelInfo,
    OrgMember,
)
from provbot.detectors.hub.repo_ids import is_revision, validate_repo_id
from provbot.detectors.hub.retry import HubStats, RetryPolicy
from provbot.detectors.hub.transport import MAX_ANSWER_BYTES, Transport

if TYPE_CHECKING:
    from huggingface_hub.utils import httpx

log = logging.getLogger(__name__)

#: File suffixes of pickled weights: never downloaded (loading them can run code).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_LIST = TypeAdapter(list[dict[str, Any]])
_MEMBERS = TypeAdapter(list[OrgMember])


class _NewDiscussion(BaseModel):
    num: int


class _NewMessage(BaseModel):
    newMessage: DiscussionEvent  # noqa: N815 - the Hub's key


class _UpdatedComment(BaseModel):
    updatedComment: DiscussionEvent  # noqa: N815 - the Hub's key


def default_endpoint() -> str:
    """The Hub endpoint huggingface_hub is configured for (``HF_ENDPOINT``, else huggingface.co)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


class HubClient:
    """A typed client for one Hub endpoint and token.

    Args:
        endpoint: the Hub's base URL (default: huggingface_hub's, ``HF_ENDPOINT``).
        token: sent as a bearer token; None sends none (a token cached on the machine is never used).
        retry: retries, backoff and the rate-limit deadline (:class:`RetryPolicy`).
        timeout_s: per-request connect/read timeout.
        max_answer_bytes: largest JSON answer accepted.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: SecretStr | str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 60.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.transport = Transport(
            endpoint or default_endpoint(),
            token,
            policy=retry,
            timeout_s=timeout_s,
            max_answer_bytes=max_answer_bytes,
        )
        self.endpoint = self.transport.endpoint

    def __repr__(self) -> str:
        return f"HubClient({self.endpoint!r}, token={'set' if self.transport.has_token else None})"

    @property
    def stats(self) -> HubStats:
        return self.transport.stats

    @property
    def retry(self) -> RetryPolicy:
        return self.transport.policy

    # -- repos ---------------------------------------------------------------------------------
    def model_info(self, repo: str, revision: str | None = None, *, expand: Iterable[str] | None = None) -> ModelInfo:
        """The repo at ``revision`` (default: main): commit sha, files, card data, ...

        >>> HubClient("http://127.0.0.1:9").model_info("org/../x")
        Traceback (most recent call last):
        provbot.detectors.errors.NotFoundError: 'org/../x' is not a Hub repo id (namespace/name)
        """
        validate_repo_id(repo)
        call = Call("model info", repo, revision)
        if revision is not None and not is_revision(revision):
            raise NotFoundError(f"{call}: {revision[:100]!r} is not a revision")
        path = f"api/models/{repo}" + (f"/revision/{quote(revision, safe='')}" if revision else "")
        params = [("expand", e) for e in expand] if expand else None

        def handle(r: httpx.Response) -> ModelInfo:
            info = self.transport.parse(self.transport.read_body(r, call), call, ModelInfo)
            # A renamed repo redirects to its new id; a direct answer about another repo is wrong.
            if info.id.lower() != repo.lower() and not r.history:
                raise bad_answer(call, self.endpoint, f"answer is about {info.id!r}")
            return info

        return self.transport.send(call, "GET", self.transport.url(path), handle, params=params)

    def list_models(
        self,
        *,
        sort: str | None = None,
        expand: Iterable[str] | None = None,
        limit: int | None = None,
        author: str | None = None,
        search: str | None = None,
        num_parameters: str | None = None,
    ) -> Iterator[ModelInfo]:
        """Models of a listing, newest (or most downloaded, ...) first, fetched page by page as iterated.

        Each page is retried on its own; an entry that fails validation is skipped and counted in
        ``stats.skipped_entries`` (one odd repo must not hide the rest of the Hub).
        """
        params: list[tuple[str, str | int]] = []
        for key, value in (("sort", sort), ("author", author), ("search", search), ("num_parameters", num_parameters)):
            if value is not None:
                params.append((key, value))
        params += [("expand", e) for e in expand or []]
        if limit is not None:
            params.append(("limit", min(limit, 1000)))
        items = self._pages(Call(f"listing models by {sort or 'default order'}"), "api/models", params)
        return islice(items, limit) if limit is not None else items

    def _pages(self, call: Call, path: str, params: list[tuple[str, str | int]]) -> Iterator[ModelInfo]:
        url: str | None = self.transport.url(path)
        query: list[tuple[str, str | int]] | None = params
        while url is not None:
            page, url = self.transport.json_page(call, url, _LIST, params=query)
            query = None  # the next-page URL carries the query
            valid = []
            for raw in page:
                try:
                    valid.append(ModelInfo.model_validate(raw))
                except ValidationError:
                    self.stats.add("skipped_entries")
            if len(valid) < len(page):
                log.warning("%s: skipped %d malformed entries of a page", call, len(page) - len(valid))
            yield from valid

    def walk_models(
        self,
        sort: str,
        expand: Iterable[str],
        stop: Callable[[ModelInfo], bool],
        *,
        limit: int | None = None,
    ) -> list[ModelInfo]:
        """Models newest-first by ``sort`` until ``stop(model)`` is true (that model excluded)."""
        out: list[ModelInfo] = []
        for model in self.list_models(sort=sort, expand=list(expand), limit=limit):
            if stop(model):
                break
            out.append(model)
        return out

    def org_members(self, org: str) -> set[str]:
        """User names (lower case) of organisation ``org``'s members; empty when ``org`` is not an organisation."""
        call = Call("members", org)
        try:
            members = self.transport.json(call, "GET", f"api/organizations/{quote(org, safe='')}/members", _MEMBERS)
        except NotFoundError:
            return set()
        return {n.lower() for m in members if (n := m.user or m.name)}

    # -- files -----------------------------------------------------------------------------------
    def file_url(self, repo: str, path: str, *, revision: str | None = None) -> str:
        """The ``resolve`` URL of a file (the Hub redirects it to its CDN)."""
        from huggingface_hub import hf_hub_url

        return str(hf_hub_url(repo, path, revision=revision or "main", endpoint=self.endpoint))

    def read_range(self, repo: str, path: str, start: int, end: int, *, revision: str | None = None) -> bytes:
        """Bytes ``[start, end)`` of a file (fewer if the file ends first), by an HTTP range request."""
        call = Call(f"reading {path}", repo)

        def handle(r: httpx.Response) -> bytes:
            if r.status_code == 200:  # Range ignored: the whole file comes, read only what is needed
                return self.transport.read_upto(r, end)[start:end]
            return self.transport.read_upto(r, end - start)

        if end <= start:
            return b""
        headers = {"Range": f"bytes={start}-{end - 1}"}
        url = self.file_url(repo, path, revision=revision)
        return self.transport.send(call, "GET", url, handle, accept=frozenset({200, 206}), headers=headers)

    def read_file(
        self, repo: str, path: str, *, revision: str | None = None, max_bytes: int = MAX_ANSWER_BYTES
    ) -> bytes:
        """A whole (small) file; more than ``max_bytes`` is a BadAnswerError."""
        call = Call(f"reading {path}", repo)
        url = self.file_url(repo, path, revision=revision)
        return self.transport.send(call, "GET", url, lambda r: self.transport.read_body(r, call, limit=max_bytes))

    def download(self, repo: str, path: str, dest: str | os.PathLike[str], *, revision: str | None = None) -> Path:
        """Download a file to ``dest`` atomically: a partial download never appears under that name."""
        call = Call(f"downloading {path}", repo)
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)

        def handle(r: httpx.Response) -> Path:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as fh:
                    for chunk in r.iter_bytes():
                        fh.write(chunk)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return target

        return self.transport.send(call, "GET", self.file_url(repo, path, revision=revision), handle)

    def snapshot(
        self,
        repo: str,
        dest: str | os.PathLike[str],
        *,
        revision: str | None = None,
        allow: Iterable[str] = ("*",),
        info: ModelInfo | None = None,
    ) -> Path:
        """Files of ``repo`` matching ``allow`` into ``dest/<commit sha>``, pinned to that commit; never pickles.

        Files already there are kept (a snapshot folder is named by its commit, so they cannot be stale).
        """
        info = info or self.model_info(repo, revision)
        sha = info.sha or revision or "main"
        folder = Path(dest) / sha
        patterns = list(allow)
        for name in sorted(info.filenames):
            if name.lower().endswith(PICKLE_SUFFIXES) or not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            target = folder / name
            if not target.is_file():
                self.download(repo, name, target, revision=sha)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- discussions -------------------------------------------------------------------------------
    def list_discussions(self, repo: str, *, author: str | None = None, status: str | None = None) -> list[Discussion]:
        """Every discussion of ``repo`` (optionally by ``author`` / with ``status``), following pages."""
        validate_repo_id(repo)
        call = Call("discussions", repo)
        out: list[Discussion] = []
        page_no = 0
        while True:
            params = [("p", str(page_no))] + [(k, v) for k, v in (("author", author), ("status", status)) if v]
            page = self.transport.json(call, "GET", f"api/models/{repo}/discussions", DiscussionPage, params=params)
            out += page.discussions
            if not page.discussions or len(out) >= page.count or page_no >= 1000:
                return out
            page_no += 1

    def discussion_details(self, repo: str, num: int) -> DiscussionDetails:
        validate_repo_id(repo)
        return self.transport.json(
            Call(f"discussion #{num}", repo), "GET", f"api/models/{repo}/discussions/{num}", DiscussionDetails
        )

    def create_discussion(self, repo: str, title: str, body: str) -> DiscussionDetails:
        """Open a discussion; returns it with its first comment (one more read)."""
        validate_repo_id(repo)
        created = self.transport.json(
            Call("new discussion", repo),
            "POST",
            f"api/models/{repo}/discussions",
            _NewDiscussion,
            json_body={"title": title, "description": body, "pullRequest": False},
            write=True,
        )
        return self.discussion_details(repo, created.num)

    def comment(self, repo: str, num: int, body: str) -> DiscussionEvent:
        validate_repo_id(repo)
        answer = self.transport.json(
            Call(f"comment on #{num}", repo),
            "POST",
            f"api/models/{repo}/discussions/{num}/comment",
            _NewMessage,
            json_body={"comment": body},
            write=True,
        )
        return answer.newMessage

    def edit_comment(self, repo: str, num: int, comment_id: str, body: str) -> DiscussionEvent:
        validate_repo_id(repo)
        # Editing to the same text twice is harmless: this write may be retried like a read.
        answer = self.transport.json(
            Call(f"edit on #{num}", repo),
            "POST",
            f"api/models/{repo}/discussions/{num}/comment/{quote(comment_id, safe='')}/edit",
            _UpdatedComment,
            json_body={"content": body},
        )
        return answer.updatedComment

    def change_discussion_status(self, repo: str, num: int, status: str, comment: str | None = None) -> None:
        validate_repo_id(repo)
        body: dict[str, str] = {"status": status}
        if comment:
            body["comment"] = comment
        self.transport.json(
            Call(f"status of #{num}", repo),
            "POST",
            f"api/models/{repo}/discussions/{num}/status",
            TypeAdapter(dict[str, Any]),
            json_body=body,
            write=True,
        )

    def discussion_url(self, repo: str, num: int) -> str:
        return f"{self.endpoint}/{repo}/discussions/{num}"

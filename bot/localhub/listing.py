"""``GET /api/models``: filtered, sorted (newest first), paginated listings like the Hub's.

Pagination is by keyset: the ``cursor`` encodes the (sort key, id) of the last item of a page, so
repos added between two page requests never shift or duplicate items already seen. The next page
is announced with ``Link: <...&cursor=...>; rel="next"``, which ``huggingface_hub``'s
``paginate`` follows.

>>> parse_num_parameters("min:6B,max:128B")
(6000000000, 128000000000)
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from provbot.bot.localhub.store import HubError

# The client's sort names are mapped by huggingface_hub to these (created_at -> createdAt ...).
SORT_FIELDS = {
    "createdAt": "createdAt",
    "created_at": "createdAt",
    "lastModified": "lastModified",
    "last_modified": "lastModified",
    "downloads": "downloads",
    "likes": "likes",
    "trendingScore": "likes",  # no trending here: likes stand in
    "id": "id",
}
# Fields of a listing item without ``expand`` / ``full`` (as the Hub answers).
DEFAULT_FIELDS = (
    "_id",
    "id",
    "modelId",
    "likes",
    "downloads",
    "tags",
    "pipeline_tag",
    "library_name",
    "createdAt",
    "private",
)
FULL_EXTRA = ("author", "sha", "lastModified", "gated", "disabled", "siblings")
_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
_NUM_RE = re.compile(r"^(\d+(?:\.\d+)?)([KMBT]?)$", re.IGNORECASE)


def parse_num_parameters(spec: str) -> tuple[int | None, int | None]:
    """``"min:6B,max:128B"`` -> (low, high); raises HubError 400 when malformed."""
    low = high = None
    for part in spec.split(","):
        key, _, value = part.partition(":")
        match = _NUM_RE.match(value.strip())
        if key.strip() not in ("min", "max") or match is None:
            raise HubError(400, None, f"Invalid num_parameters: {spec}")
        n = int(float(match.group(1)) * _SUFFIX[match.group(2).upper()])
        if key.strip() == "min":
            low = n
        else:
            high = n
    return low, high


def _encode_cursor(key: Any, repo_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([key, repo_id]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[Any, str]:
    try:
        key, repo_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return key, str(repo_id)
    except (ValueError, TypeError):
        raise HubError(400, None, "Invalid cursor") from None


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def list_models(app: Any, request: Request) -> Response:
    """Answer a listing; ``app`` is the LocalHubApp (store, options, auth)."""
    q = request.query_params
    sort_name = q.get("sort") or "createdAt"
    if sort_name not in SORT_FIELDS:
        raise HubError(400, None, f"Invalid sort: {sort_name}")
    sort_key = SORT_FIELDS[sort_name]
    try:
        limit = int(q.get("limit") or app.options.page_size)
    except ValueError:
        raise HubError(400, None, "Invalid limit") from None
    page_size = max(1, min(limit, app.options.page_size))
    expand = q.getlist("expand") + q.getlist("expand[]")
    author = q.get("author")
    search = (q.get("search") or "").lower()
    tag_filters = q.getlist("filter")
    pipeline_tag = q.get("pipeline_tag")
    gated = None if q.get("gated") is None else _truthy(q.get("gated"))
    low, high = parse_num_parameters(q["num_parameters"]) if q.get("num_parameters") else (None, None)
    app.user(request)  # an unknown token is refused even for public listings, as on the Hub

    items: list[dict[str, Any]] = []
    for repo_id in app.store.list_repo_ids():
        if author and repo_id.split("/")[0] != author:
            continue
        if search and search not in repo_id.lower():
            continue
        try:
            app.check_read(request, repo_id)
            rev = app.store.resolve(repo_id, None)
        except HubError:
            continue  # private repos the caller may not see, or a repo deleted meanwhile
        info = app.store.model_info(rev)
        if tag_filters and not set(tag_filters) <= set(info["tags"]):
            continue
        if pipeline_tag and info.get("pipeline_tag") != pipeline_tag:
            continue
        if gated is not None and bool(info.get("gated")) != gated:
            continue
        total = (info.get("safetensors") or {}).get("total") or (info.get("gguf") or {}).get("total")
        if (low is not None or high is not None) and total is None:
            continue
        if (low is not None and total < low) or (high is not None and total > high):
            continue
        items.append(info)

    # Newest (largest) first; ties broken by id so the order (and the cursor) is total.
    items.sort(key=lambda i: i["id"])
    items.sort(key=lambda i: i[sort_key], reverse=sort_key != "id")
    if q.get("cursor"):
        after_key, after_id = _decode_cursor(q["cursor"])
        position = next(
            (n for n, i in enumerate(items) if _after(i[sort_key], i["id"], after_key, after_id, sort_key)),
            len(items),
        )
        items = items[position:]
    page, rest = items[:page_size], items[page_size:]

    if "childrenModelCount" in expand:
        _add_children_counts(app, page)
    fields = _fields(
        expand, full=_truthy(q.get("full")), config=_truthy(q.get("config")), card=_truthy(q.get("cardData"))
    )
    body = [{k: v for k, v in i.items() if k in fields} for i in page]
    headers = {}
    if rest and page:
        last = page[-1]
        params = [(k, v) for k, v in q.multi_items() if k != "cursor"]
        params.append(("cursor", _encode_cursor(last[sort_key], last["id"])))
        base = str(request.url.replace(query=""))
        headers["Link"] = f'<{base}?{urlencode(params)}>; rel="next"'
    return JSONResponse(body, headers=headers)


def _after(key: Any, repo_id: str, after_key: Any, after_id: str, sort_key: str) -> bool:
    """Whether an item comes after the cursor in (key desc, id asc) order."""
    if sort_key == "id":
        return repo_id > after_id
    if key != after_key:
        return key < after_key
    return repo_id > after_id


def _fields(expand: list[str], full: bool, config: bool, card: bool) -> set[str]:
    if expand:
        return {"_id", "id", *expand}
    fields = set(DEFAULT_FIELDS)
    if full:
        fields |= set(FULL_EXTRA)
    if config:
        fields.add("config")
    if card:
        fields.add("cardData")
    return fields


def _add_children_counts(app: Any, page: list[dict[str, Any]]) -> None:
    """childrenModelCount: repos on this server whose card names the item as a base model."""
    counts: dict[str, int] = {}
    for repo_id in app.store.list_repo_ids():
        try:
            info = app.store.model_info(app.store.resolve(repo_id, None))
        except HubError:
            continue
        for base in (info.get("baseModels") or {}).get("models", []):
            counts[base["id"]] = counts.get(base["id"], 0) + 1
    for item in page:
        item["childrenModelCount"] = counts.get(item["id"], 0)

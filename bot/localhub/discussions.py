"""Discussions and comments, in the Hub's JSON shapes, persisted per repo; webhooks on changes.

Storage: ``ROOT/<org>/.localhub/<name>.discussions.json`` (outside the repo folder, so replacing a
repo's files keeps its discussions; ignored by repo discovery). Authorship comes from the bearer
token (``ServerOptions.tokens`` maps tokens to user names); writing needs a token.

Routes under ``/api/models/{org}/{name}/discussions``:
``GET ?p=&type=&status=&author=``, ``POST`` {title, description, pullRequest},
``GET /{num}``, ``POST /{num}/comment`` {comment}, ``POST /{num}/comment/{id}/edit`` {content},
``POST /{num}/comment/{id}/hide``, ``POST /{num}/status`` {status, comment?},
``POST /{num}/title`` {title}.
"""

from __future__ import annotations

import html
import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from provbot.bot.localhub.store import HubError, now_iso
from provbot.bot.localhub.webhooks import WEB_BASE, WebhookSender, build_payload, object_id

PAGE_SIZE = 50
HIDDEN_TEXT = "This comment has been hidden"


class NewDiscussion(BaseModel):
    title: str = Field(min_length=3, max_length=200)
    description: str | None = None
    pullRequest: bool = False


class NewComment(BaseModel):
    comment: str = Field(min_length=1, max_length=65_536)


class EditComment(BaseModel):
    content: str = Field(min_length=1, max_length=65_536)


class NewStatus(BaseModel):
    status: str = Field(pattern="^(open|closed)$")
    comment: str | None = None


class NewTitle(BaseModel):
    title: str = Field(min_length=3, max_length=200)


def _user_ref(name: str) -> dict[str, Any]:
    return {"_id": object_id(name), "name": name, "fullname": name, "type": "user", "isOwner": False}


def _event(kind: str, author: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": secrets.token_hex(12),
        "type": kind,
        "createdAt": now_iso(),
        "author": _user_ref(author),
        "data": data,
    }


def _comment_event(author: str, raw: str) -> dict[str, Any]:
    when = now_iso()
    latest = {"raw": raw, "html": f"<p>{html.escape(raw)}</p>", "updatedAt": when, "author": _user_ref(author)}
    return _event(
        "comment",
        author,
        {
            "edited": False,
            "hidden": False,
            "latest": latest,
            "numEdits": 0,
            "editors": [author],
            "history": [latest],
            "reactions": [],
        },
    )


class DiscussionStore:
    """Per-repo JSON files; all mutations under one lock, written atomically."""

    def __init__(self, root: Path):
        self.root = root
        self.lock = threading.RLock()

    def path(self, repo_id: str) -> Path:
        org, name = repo_id.split("/")
        return self.root / org / ".localhub" / f"{name}.discussions.json"

    def load(self, repo_id: str) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path(repo_id).read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            raise HubError(500, None, f"discussion store for {repo_id} is unreadable") from None
        return data if isinstance(data, list) else []

    def save(self, repo_id: str, discussions: list[dict[str, Any]]) -> None:
        path = self.path(repo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(discussions, indent=1))
        os.replace(tmp, path)

    def delete(self, repo_id: str) -> None:
        self.path(repo_id).unlink(missing_ok=True)


class DiscussionsApi:
    """Handles the discussion routes for a LocalHubApp."""

    def __init__(self, app: Any, webhooks: WebhookSender):
        self.app = app
        self.webhooks = webhooks
        self.store = DiscussionStore(app.store.root)

    async def handle(self, request: Request, repo_id: str, rest: list[str]) -> Response:
        body: dict[str, Any] = {}
        if request.method == "POST":
            raw = await request.body()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise HubError(400, None, "Invalid JSON body") from None
                if not isinstance(body, dict):
                    raise HubError(400, None, "Invalid JSON body")
        return await anyio.to_thread.run_sync(self._dispatch, request, repo_id, rest, body)

    def _dispatch(self, request: Request, repo_id: str, rest: list[str], body: dict[str, Any]) -> Response:
        user = self.app.check_read(request, repo_id)
        method = request.method
        if not rest:
            if method == "GET":
                return self.list(request, repo_id)
            if method == "POST":
                return self.create(repo_id, self._writer(user), body)
        else:
            try:
                num = int(rest[0])
            except ValueError:
                raise HubError(404, None, "Discussion not found") from None
            tail = rest[1:]
            if not tail and method == "GET":
                return JSONResponse(self._details(repo_id, self._find(self.store.load(repo_id), num)))
            if method == "POST":
                writer = self._writer(user)
                if tail == ["comment"]:
                    return self.comment(repo_id, num, writer, body)
                if len(tail) == 3 and tail[0] == "comment" and tail[2] in ("edit", "hide"):
                    return self.change_comment(repo_id, num, tail[1], tail[2], writer, body)
                if tail == ["status"]:
                    return self.status(repo_id, num, writer, body)
                if tail == ["title"]:
                    return self.title(repo_id, num, writer, body)
        raise HubError(404, None, "Sorry, we can't find the page you are looking for.")

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _writer(user: str | None) -> str:
        if user is None:
            raise HubError(401, None, "You must be authenticated to do this")
        return user

    @staticmethod
    def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise HubError(400, None, f"Invalid {'.'.join(map(str, first['loc']))}: {first['msg']}") from None

    @staticmethod
    def _find(discussions: list[dict[str, Any]], num: int) -> dict[str, Any]:
        for d in discussions:
            if d["num"] == num:
                return d
        raise HubError(404, None, "Discussion not found")

    def _is_owner(self, repo_id: str, user: str) -> bool:
        return user == repo_id.split("/")[0]

    def _summary(self, repo_id: str, d: dict[str, Any]) -> dict[str, Any]:
        comments = [e for e in d["events"] if e["type"] == "comment"]
        return {
            "num": d["num"],
            "title": d["title"],
            "status": d["status"],
            "createdAt": d["createdAt"],
            "author": _user_ref(d["author"]),
            "isPullRequest": d["isPullRequest"],
            "pinned": False,
            "numComments": len(comments),
            "topReactions": [],
            "repo": {"name": repo_id, "type": "model"},
        }

    def _details(self, repo_id: str, d: dict[str, Any]) -> dict[str, Any]:
        out = self._summary(repo_id, d)
        out["events"] = [self._present(e) for e in d["events"]]
        if d["isPullRequest"]:
            out["changes"] = {"base": "refs/heads/main"}
            out["filesWithConflicts"] = []
            out["diff"] = ""
        return out

    @staticmethod
    def _present(event: dict[str, Any]) -> dict[str, Any]:
        """Hidden comments show a placeholder instead of their text, as on the Hub."""
        if event["type"] == "comment" and event["data"]["hidden"]:
            event = json.loads(json.dumps(event))
            event["data"]["latest"]["raw"] = HIDDEN_TEXT
            event["data"]["latest"]["html"] = f"<p>{HIDDEN_TEXT}</p>"
            event["data"]["history"] = []
        return event

    def _emit(
        self, repo_id: str, action: str, scope: str, d: dict[str, Any], comment: dict[str, Any] | None = None
    ) -> None:
        private = self.app.store.config(repo_id).private
        web = f"{WEB_BASE}/{repo_id}/discussions/{d['num']}"
        discussion = {
            "id": object_id(f"{repo_id}#{d['num']}"),
            "num": d["num"],
            "title": d["title"],
            "status": d["status"],
            "author": {"id": object_id(d["author"])},
            "isPullRequest": d["isPullRequest"],
            "pinned": False,
            "url": {"web": web, "api": f"{WEB_BASE}/api/models/{repo_id}/discussions/{d['num']}"},
        }
        if d["isPullRequest"]:
            discussion["changes"] = {"base": "refs/heads/main"}
        comment_payload = None
        if comment is not None:
            hidden = comment["data"]["hidden"]
            comment_payload = {
                "id": comment["id"],
                "author": {"id": object_id(comment["author"]["name"])},
                "hidden": hidden,
                "url": {"web": f"{web}#{comment['id']}"},
            }
            if not hidden:  # the Hub leaves the text out of payloads for hidden comments
                comment_payload["content"] = comment["data"]["latest"]["raw"]
        self.webhooks.emit(
            lambda t: build_payload(
                action,
                scope,
                repo_id,
                private=private,
                discussion=discussion,
                comment=comment_payload,
                webhook_id=t.id,
            )
        )

    # -- operations ------------------------------------------------------------------------
    def list(self, request: Request, repo_id: str) -> Response:
        q = request.query_params
        try:
            page = max(0, int(q.get("p") or 0))
        except ValueError:
            raise HubError(400, None, "Invalid page") from None
        kind, status, author = q.get("type") or "all", q.get("status") or "all", q.get("author")
        items = sorted(self.store.load(repo_id), key=lambda d: d["num"], reverse=True)  # newest first
        if kind == "discussion":
            items = [d for d in items if not d["isPullRequest"]]
        elif kind == "pull_request":
            items = [d for d in items if d["isPullRequest"]]
        if status != "all":
            items = [d for d in items if d["status"] == status]
        if author:
            items = [d for d in items if d["author"] == author]
        start = page * PAGE_SIZE
        chosen = items[start : start + PAGE_SIZE]
        closed = sum(1 for d in items if d["status"] == "closed")
        return JSONResponse(
            {
                "discussions": [self._summary(repo_id, d) for d in chosen],
                "count": len(items),
                "start": start,
                "numClosedDiscussions": closed,
            }
        )

    def create(self, repo_id: str, user: str, body: dict[str, Any]) -> Response:
        new = self._parse(NewDiscussion, body)
        with self.store.lock:
            discussions = self.store.load(repo_id)
            num = max((d["num"] for d in discussions), default=0) + 1
            first = _comment_event(user, (new.description or "").strip() or "(no description)")
            d = {
                "num": num,
                "title": new.title.strip(),
                "status": "open",
                "createdAt": first["createdAt"],
                "author": user,
                "isPullRequest": new.pullRequest,
                "events": [first],
            }
            discussions.append(d)
            self.store.save(repo_id, discussions)
        self._emit(repo_id, "create", "discussion", d, comment=first)
        return JSONResponse({"num": num, "url": f"{WEB_BASE}/{repo_id}/discussions/{num}", "pullRequest": None})

    def comment(self, repo_id: str, num: int, user: str, body: dict[str, Any]) -> Response:
        new = self._parse(NewComment, body)
        with self.store.lock:
            discussions = self.store.load(repo_id)
            d = self._find(discussions, num)
            event = _comment_event(user, new.comment)
            d["events"].append(event)
            self.store.save(repo_id, discussions)
        self._emit(repo_id, "create", "discussion.comment", d, comment=event)
        return JSONResponse({"newMessage": event})

    def change_comment(
        self, repo_id: str, num: int, comment_id: str, action: str, user: str, body: dict[str, Any]
    ) -> Response:
        edit = self._parse(EditComment, body) if action == "edit" else None
        with self.store.lock:
            discussions = self.store.load(repo_id)
            d = self._find(discussions, num)
            event = next((e for e in d["events"] if e["id"] == comment_id and e["type"] == "comment"), None)
            if event is None:
                raise HubError(404, None, "Comment not found")
            author = event["author"]["name"]
            if action == "edit":
                if user != author:
                    raise HubError(403, None, "You can only edit your own comments")
                latest = {
                    "raw": edit.content,
                    "html": f"<p>{html.escape(edit.content)}</p>",
                    "updatedAt": now_iso(),
                    "author": _user_ref(user),
                }
                event["data"].update(latest=latest, edited=True, numEdits=event["data"]["numEdits"] + 1)
                event["data"]["history"].insert(0, latest)
            else:
                if user != author and not self._is_owner(repo_id, user):
                    raise HubError(403, None, "Only the author or the repo owner can hide a comment")
                event["data"]["hidden"] = True
            self.store.save(repo_id, discussions)
        self._emit(repo_id, "update", "discussion.comment", d, comment=event)
        return JSONResponse({"updatedComment": self._present(event)})

    def status(self, repo_id: str, num: int, user: str, body: dict[str, Any]) -> Response:
        new = self._parse(NewStatus, body)
        with self.store.lock:
            discussions = self.store.load(repo_id)
            d = self._find(discussions, num)
            if user != d["author"] and not self._is_owner(repo_id, user):
                raise HubError(403, None, "Only the author or the repo owner can change the status")
            event = _event("status-change", user, {"status": new.status})
            d["status"] = new.status
            d["events"].append(event)
            if new.comment and new.comment.strip():
                d["events"].append(_comment_event(user, new.comment.strip()))
            self.store.save(repo_id, discussions)
        self._emit(repo_id, "update", "discussion", d)
        return JSONResponse({"newStatus": event})

    def title(self, repo_id: str, num: int, user: str, body: dict[str, Any]) -> Response:
        new = self._parse(NewTitle, body)
        with self.store.lock:
            discussions = self.store.load(repo_id)
            d = self._find(discussions, num)
            if user != d["author"] and not self._is_owner(repo_id, user):
                raise HubError(403, None, "Only the author or the repo owner can rename a discussion")
            event = _event("title-change", user, {"from": d["title"], "to": new.title.strip()})
            d["title"] = new.title.strip()
            d["events"].append(event)
            self.store.save(repo_id, discussions)
        self._emit(repo_id, "update", "discussion", d)
        return JSONResponse({"newTitle": event})

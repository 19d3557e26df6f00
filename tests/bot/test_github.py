"""Moderation issues on GitHub: created once (even after a failed POST), through a fake GitHub API on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from huggingface_hub import HfApi
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from provbot.bot.service.runner import BotService
from tests.bot.helpers import approve_and_drain, model_files, upload_and_find

GH_TOKEN = "ghp_FakeGithubToken000000000000"


class FakeGitHub:
    """Just enough of the issues API: list (labels, state, pages), create, edit; scripted failures."""

    def __init__(self) -> None:
        self.issues: list[dict] = []
        self.fail_next_posts = 0
        self.auth: list[str | None] = []
        self.app = Starlette(
            routes=[
                Route("/repos/{owner}/{name}/issues", self.issues_route, methods=["GET", "POST"]),
                Route("/repos/{owner}/{name}/issues/{num:int}", self.edit, methods=["PATCH"]),
            ]
        )

    async def issues_route(self, request: Request) -> JSONResponse:
        self.auth.append(request.headers.get("authorization"))
        if request.method == "GET":
            label = request.query_params.get("labels")
            return JSONResponse([i for i in self.issues if label in i["labels"]])
        if self.fail_next_posts:
            self.fail_next_posts -= 1
            return JSONResponse({"message": "bad gateway"}, status_code=502)
        body = await request.json()
        issue = {
            "number": len(self.issues) + 1,
            "title": body["title"],
            "body": body["body"],
            "labels": body["labels"],
            "html_url": f"https://github.example/{request.path_params['owner']}/issues/{len(self.issues) + 1}",
        }
        self.issues.append(issue)
        return JSONResponse(issue, status_code=201)

    async def edit(self, request: Request) -> JSONResponse:
        issue = self.issues[request.path_params["num"] - 1]
        issue["body"] = (await request.json())["body"]
        return JSONResponse(issue)


@pytest.fixture
def github() -> Iterator[tuple[FakeGitHub, str]]:
    fake = FakeGitHub()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(fake.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield fake, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)


def test_github_issue_created_once_despite_a_failed_post(service: BotService, hub, github) -> None:  # noqa: ANN001
    fake, url = github
    b = service.ctx.settings.bot
    b.github_repo, b.github_api, b.github_token = "org/moderation", url, SecretStr(GH_TOKEN)
    fake.fail_next_posts = 1
    finding = upload_and_find(service, hub, "sneaky/m", model_files(seed=7))
    approve_and_drain(service, finding.id)
    assert len(fake.issues) == 1 and fake.issues[0]["title"].startswith("[provbot] Automated lineage check: sneaky/m")
    assert "Finding for moderators" in fake.issues[0]["body"]
    assert set(fake.auth) == {f"Bearer {GH_TOKEN}"}
    # The Hub discussion was posted once, too, although the job ran twice.
    assert len(list(HfApi(endpoint=hub.url, token=False).get_repo_discussions("sneaky/m"))) == 1
    dumped = " ".join(e.model_dump_json() for e in service.ctx.audit.query(limit=1000))
    assert "GitHub issue https://github.example/org/issues/1" in dumped and GH_TOKEN not in dumped

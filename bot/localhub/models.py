"""Pydantic models at the local Hub's boundaries: per-repo settings and server options.

A repo folder may hold a ``.localhub.json`` file (never listed as a repo file) that sets how the
server presents it:

>>> RepoConfig.model_validate({"private": True, "members": ["alice"]}).private
True
>>> ServerOptions(tokens={"hf_abc": "alice"}).tokens["hf_abc"]
'alice'
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class RepoConfig(BaseModel):
    """Settings read from ``ROOT/<org>/<name>/.localhub.json`` (all optional)."""

    # Field names or the Hub's camelCase aliases (createdAt, lastModified, tags) both work.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    private: bool = False
    gated: Literal[False, "auto", "manual"] = False
    # Users (token owners) who may read a private repo or download a gated repo's files. ``None``
    # means: any valid token for a private repo, and nobody but the org itself for a gated one.
    members: list[str] | None = None
    created_at: datetime | None = Field(None, alias="createdAt")
    last_modified: datetime | None = Field(None, alias="lastModified")
    downloads: int = 0
    likes: int = 0
    extra_tags: list[str] = Field(default_factory=list, alias="tags")
    pipeline_tag: str | None = None
    library_name: str | None = None


class FaultRule(BaseModel):
    """One injected fault: the next ``count`` requests whose path starts with ``prefix`` get it.

    ``status`` 0 means "answer normally" (useful with ``delay_s`` for slow responses).
    """

    prefix: str = "/"
    status: int = 500
    count: int = Field(1, ge=1)
    delay_s: float = Field(0.0, ge=0)
    methods: list[str] | None = None
    # 429 answers carry the Hub's RateLimit headers; seconds until the window resets.
    reset_s: int = Field(1, ge=0)


class WebhookTarget(BaseModel):
    """A URL the server POSTs Hub webhook payloads (v3) to, with ``X-Webhook-Secret``."""

    url: str
    secret: SecretStr | None = None  # never shown in reprs or logs
    id: str = "localhub-webhook"


class ServerOptions(BaseModel):
    """Per-server options; everything can also be changed on a running :class:`LocalHub`."""

    # Tokens are secrets: kept out of reprs (and so out of logs).
    tokens: dict[str, str] = Field(default_factory=dict, repr=False, description="bearer token -> user name")
    latency_ms: float = Field(0.0, ge=0, description="added before every response")
    bandwidth_mbps: float | None = Field(None, gt=0, description="cap per response body, megabits/s")
    link_mbps: float | None = Field(None, gt=0, description="cap shared by all response bodies (one link), megabits/s")
    redirect_resolve: bool = Field(False, description="answer resolve with 302 to /cdn/... like the Hub")
    cdn_host: str | None = Field(
        None, description="host name the redirects name for the CDN (e.g. localhost: another origin than the Hub's)"
    )
    cdn_expiry_s: int = Field(3600, ge=0, description="lifetime of a signed CDN URL")
    quotas: dict[str, int] = Field(
        default_factory=dict, description="requests per window per bucket (api, resolvers); more answer 429"
    )
    window_s: int = Field(300, ge=1, description="length of a quota window (Hub time)")
    rate_windows: bool = Field(
        False, description="per-token windows with the Hub's quotas (free, or pro for pro_users); quotas override"
    )
    pro_users: list[str] = Field(default_factory=list, description="users whose tokens get the PRO quotas")
    time_scale: float = Field(1.0, gt=0, le=1_000_000, description="Hub time per real second in quota windows")
    page_size: int = Field(1000, ge=1, description="largest page list_models gets")
    webhooks: list[WebhookTarget] = Field(default_factory=list)
    orgs: dict[str, list[str]] = Field(default_factory=dict, description="organisation -> member user names")

"""Settings: defaults in config/default.toml, overridden by environment variables ``PROVBOT_*``.

A different TOML file can be named with ``PROVBOT_CONFIG``. Secrets (the Hub token, the webhook
secret) are ``SecretStr`` so that they never print in logs, reprs or the audit log.

Files provbot writes by default (the SQLite database, the identity cache) live in ``data_dir``: the
user's data directory (platformdirs: ``~/.local/share/provbot`` on Linux) unless ``PROVBOT_DATA_DIR``
or the TOML file name another folder; never in the directory a command happens to run in.

>>> from provbot.bot.settings import get_settings
>>> get_settings().scan.budget_mb
4.0
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from provbot.bot.paths import CONFIG_DIR
from provbot.detectors.errors import ConfigError
from provbot.detectors.options import IdentityOptions, ScanOptions


class ScanSettings(ScanOptions):
    """The weights detector's options (:class:`provbot.detectors.options.ScanOptions`), from ``[scan]``."""


class BotSettings(BaseModel):
    """The bot service (``provbot run``): polling, mentions, review, posting. See docs/bot.md."""

    username: str = Field(
        "provbot", description="The bot's Hub user name: what @mentions address, whose comments it ignores."
    )
    mode: Literal["review", "auto", "dry_run"] = Field(
        "review",
        description="review: a moderator approves every public post; auto: post at once; dry_run: post nothing anywhere.",
    )
    poll_minutes: float = Field(10.0, gt=0, description="Minutes between two walks of the Hub's model listings.")
    poll_sorts: list[Literal["created_at", "last_modified"]] = Field(
        ["created_at", "last_modified"], description="Listings walked newest-first down to a stored cursor."
    )
    initial_lookback_hours: float = Field(24.0, gt=0, description="How far back the very first walk goes.")
    min_parameters: int = Field(
        7_000_000_000, ge=0, description="Only models with at least this many safetensors parameters are scanned."
    )
    opt_out: list[str] = Field(
        [], description="Repos ('org/name') or namespaces ('org') never scanned or commented on."
    )
    candidates: list[str] = Field(
        [], description="Parents to scan polled models against; empty: the candidate index chooses."
    )
    scan_uploads_from_webhooks: bool = Field(
        False, description="Scan pushes announced by repo.content webhooks (watched orgs), besides polling."
    )
    watch_discussions: list[str] = Field(
        [], description="Repos without a webhook whose discussions are polled for mentions."
    )
    discussions_poll_minutes: float = Field(5.0, gt=0)
    moderators: list[str] = Field([], description="Users who may trigger scans of any repo and review findings.")
    moderation_repo: str | None = Field(
        None, description="Hub repo whose discussions receive one moderation issue per finding."
    )
    github_repo: str | None = Field(
        None, description="'owner/name' of a GitHub repo that gets one moderation issue per posted finding."
    )
    github_api: str = Field("https://api.github.com", description="GitHub REST API base URL.")
    github_token: SecretStr | None = Field(
        None, description="GitHub token; from the environment only (PROVBOT_BOT__GITHUB_TOKEN)."
    )
    mention_replies_need_review: bool = Field(
        True, description="In review mode, hold mention results for a moderator too."
    )
    mentions_per_user_per_day: int = Field(10, ge=1)
    mentions_per_repo_per_hour: int = Field(5, ge=1)
    webhook_host: str = Field("127.0.0.1", description="Where `provbot run` listens (webhook, /healthz, /metrics).")
    webhook_port: int = Field(8787, ge=0, le=65535)
    webhook_secret: SecretStr | None = Field(
        None, description="X-Webhook-Secret; from the environment only (PROVBOT_BOT__WEBHOOK_SECRET)."
    )
    marker_key: SecretStr | None = Field(
        None,
        description="Key of the hidden markers by which the bot finds its own posts; from the environment only "
        "(PROVBOT_BOT__MARKER_KEY). Unset: derived from the Hub token.",
    )
    workers: int = Field(2, ge=1, description="In-process worker threads.")
    executor: Literal["threads", "ray"] = Field(
        "threads", description="Where job bodies run: 'threads' (in-process) or 'ray' (Ray tasks; needs the ray extra)."
    )
    ray_address: str | None = Field(
        None,
        description="Ray cluster to join ('auto', 'ray://host:10001', 'host:6379'); None starts a local Ray with `workers` CPUs.",
    )
    lease_seconds: float = Field(
        120.0, gt=0, description="A running job's lease; a crashed worker's job is retried after it."
    )
    poll_lease_seconds: float = Field(
        60.0,
        gt=0,
        description="The poller lease: of several processes on one database, the holder walks the listings and "
        "renews it every third of this; another process takes polling over this long after the holder stopped renewing.",
    )
    max_attempts: int = Field(5, ge=1)
    http_retries: int = Field(5, ge=0, description="Retries of a Hub call on 429/5xx/timeouts, with backoff.")
    backoff_max_seconds: float = Field(300.0, gt=0)
    job_requests: dict[str, dict[str, int]] = Field(
        {"scan": {"resolvers": 600, "api": 20}, "upload": {"api": 5}},
        description="Hub requests a job of each kind is expected to need, per rate-limit bucket: a job "
        "starts only when the token's window (as the Hub's RateLimit headers last said) has that much left.",
    )
    identity_on_mentions: bool = Field(
        True,
        description="Run the identity (behaviour) test after a mention-triggered scan when the hardware or an endpoint allows.",
    )
    identity_on_polls: bool = Field(False, description="Also run it after polled scans whose finding would be posted.")
    identity_samples: int = Field(
        1, ge=1, description="Samples per prompt for the bot's identity runs (the CLI uses identity.samples)."
    )
    identity_prompt_limit: int | None = Field(
        None, ge=1, description="Only the first N prompts of the prompt set in the bot's runs; None: all."
    )


class IdentitySettings(IdentityOptions):
    """The identity detector's options (:class:`provbot.detectors.options.IdentityOptions`), from ``[identity]``.

    The bot caches candidates' answers by default (the library does not).
    """

    cache_dir: str | None = Field(
        "", description="Cached candidate answers; empty: identity-cache/ in data_dir; None: not cached."
    )


class IndexSettings(BaseModel):
    """The candidate-parent index (bot/index/, docs/index.md)."""

    known_bases: str = Field("known_bases.toml", description="Known-base list: a file in config/ or a path.")
    top: int = Field(
        3, ge=1, description="Candidates (base included) that `provbot scan CHILD` passes to the full scan."
    )
    crawl_sorts: list[str] = Field(["downloads", "created_at"], description="Hub listings the crawl walks.")
    crawl_limit: int = Field(100, ge=1, description="Models taken from each listing per crawl run.")
    crawl_num_parameters: str | None = Field(
        None, description="Size filter passed to list_models, e.g. 'min:6B,max:128B'."
    )


def default_data_dir() -> Path:
    """The user's data directory for provbot (``~/.local/share/provbot`` on Linux)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("provbot", appauthor=False))


class ConsoleAccount(BaseModel):
    """One console login: a password hash from `provbot console hash-password` and a role."""

    password_hash: str = Field(description="scrypt$N$r$p$salt$hash, made by `provbot console hash-password`.")
    role: Role = Field(
        "viewer", description="viewer: read only; moderator: decide findings; admin: also retry jobs, take over claims."
    )


Role = Literal["viewer", "moderator", "admin"]
#: The console's roles, lowest first: each may do what the ones before it may.
ROLES: tuple[Role, ...] = get_args(Role)
_OAUTH_ENV = "PROVBOT_CONSOLE__OAUTH__"


class ConsoleOAuthSettings(BaseModel):
    """Signing in to the console with a Hugging Face account (OAuth, docs/console.md). Off by default."""

    enabled: bool = Field(False, description="Show 'Sign in with Hugging Face' on the login page.")
    client_id: str = Field("", description="The OAuth app's client id (from the app's page on the Hub).")
    client_secret: SecretStr | None = Field(
        None,
        description="The OAuth app's client secret; from the environment only (PROVBOT_CONSOLE__OAUTH__CLIENT_SECRET).",
    )
    provider_url: str = Field("", description="Base URL of the Hub's /oauth/* endpoints; empty: hub_endpoint.")
    public_url: str = Field(
        "",
        description="The bot's public base URL as browsers reach it, e.g. https://provbot.example.org; "
        "the redirect URI registered on the Hub is this + /console/oauth/callback.",
    )
    scopes: list[str] = Field(["openid", "profile"], description="Scopes asked for (the Hub's userinfo lists orgs).")
    users: dict[str, Role] = Field({}, description="Hub user name -> console role.")
    orgs: dict[str, Role] = Field({}, description="Hub organisation name -> role of its members.")
    timeout_seconds: float = Field(
        10.0, gt=0, description="Limit on each call to the Hub's token and userinfo endpoints."
    )

    @model_validator(mode="after")
    def _complete(self) -> ConsoleOAuthSettings:
        if self.enabled:
            for field, value in (
                ("client_id", self.client_id),
                ("client_secret", self.client_secret),
                ("public_url", self.public_url),
            ):
                if not value:
                    raise ValueError(f"console OAuth is enabled but {_OAUTH_ENV}{field.upper()} is not set")
            if not self.public_url.startswith(("https://", "http://")):
                raise ValueError(f"{_OAUTH_ENV}PUBLIC_URL must start with https:// (or http:// on loopback)")
        return self

    def role_for(self, user: str, orgs: list[str] | tuple[str, ...]) -> Role | None:
        """The highest role the user's name or organisations are granted; None: not allowed in.

        >>> ConsoleOAuthSettings(users={"ann": "viewer"}, orgs={"mods": "admin"}).role_for("ann", ["mods"])
        'admin'
        """
        granted = [r for r in (self.users.get(user), *(self.orgs.get(o) for o in orgs)) if r is not None]
        return max(granted, key=ROLES.index) if granted else None


class ConsoleSettings(BaseModel):
    """The moderator web console under /console on the bot's HTTP port (docs/console.md)."""

    enabled: bool = Field(True, description="Serve the console; false: /console does not exist.")
    accounts: dict[str, ConsoleAccount] = Field(
        {}, description="Login name -> account. No accounts: nobody can log in."
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Key that signs session cookies; from the environment only (PROVBOT_CONSOLE__SESSION_SECRET). "
        "Unset: a random key per process (sessions end when the bot restarts).",
    )
    session_hours: float = Field(12.0, gt=0, description="A session ends this long after login.")
    allow_remote: bool = Field(
        False, description="Answer console requests from other hosts than loopback (put TLS in front first)."
    )
    secure_cookies: bool = Field(False, description="Mark cookies Secure (set when served over HTTPS).")
    login_attempts_per_minute: int = Field(5, ge=1, description="Failed logins per client address and per name.")
    oauth: ConsoleOAuthSettings = ConsoleOAuthSettings()

    @model_validator(mode="after")
    def _account_names_leave_hub_names_apart(self) -> ConsoleSettings:
        # Hub sign-ins are named "hf:<user>"; a password account may not take such a name.
        bad = sorted(name for name in self.accounts if ":" in name or not name.strip())
        if bad:
            raise ValueError(f"console account names may not be empty or contain ':' (got {bad[0]!r})")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROVBOT_", env_nested_delimiter="__", extra="ignore")

    hub_endpoint: str = Field("https://huggingface.co", description="Hub API endpoint (HF_ENDPOINT style).")
    hub_token: SecretStr | None = Field(None, description="Hub token; from the environment only.")
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder of the default database and identity cache (PROVBOT_DATA_DIR); default: the user's data directory.",
    )
    database_url: str = Field(
        "", description="SQLAlchemy URL (SQLite or PostgreSQL); empty: the SQLite file provbot.db in data_dir."
    )
    header_cache_dir: str | None = Field(
        "",
        description="Safetensors/GGUF headers and config.json of Hub models, by commit (a commit's never change); "
        "empty: header-cache/ in data_dir; None: kept in memory only.",
    )
    scan: ScanSettings = ScanSettings()
    index: IndexSettings = IndexSettings()
    identity: IdentitySettings = IdentitySettings()
    bot: BotSettings = BotSettings()
    console: ConsoleSettings = ConsoleSettings()

    @model_validator(mode="after")
    def _place_files(self) -> Settings:
        """Put the files nobody placed (database, identity and header caches) in ``data_dir``."""
        self.data_dir = self.data_dir.expanduser().absolute()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'provbot.db'}"
        if self.identity.cache_dir == "":
            self.identity = self.identity.model_copy(update={"cache_dir": str(self.data_dir / "identity-cache")})
        if self.header_cache_dir == "":
            self.header_cache_dir = str(self.data_dir / "header-cache")
        if not self.console.oauth.provider_url:
            self.console.oauth.provider_url = self.hub_endpoint
        return self

    def default_database_file(self) -> Path | None:
        """The SQLite file of the default database URL, or None when the settings name another database."""
        if self.database_url != f"sqlite:///{self.data_dir / 'provbot.db'}":
            return None
        return self.data_dir / "provbot.db"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("PROVBOT_CONFIG", CONFIG_DIR / "default.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings; an invalid value is a :class:`ConfigError` of one line naming it."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {config_error_line(exc)}") from None


def config_error_line(exc: ValidationError) -> str:
    """The first error of ``exc`` in one line: where, and what is wrong."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message

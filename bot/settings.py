"""Settings: defaults in config/default.toml, overridden by environment variables ``PROVBOT_*``.

A different TOML file can be named with ``PROVBOT_CONFIG``. Secrets (the Hub token, the webhook
secret) are ``SecretStr`` so that they never print in logs, reprs or the audit log.

>>> from bot.settings import get_settings
>>> get_settings().scan.budget_mb
4.0
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from bot.paths import CONFIG_DIR


class ScanSettings(BaseModel):
    budget_mb: float = Field(4.0, gt=0, description="Bytes read per model by a sampled scan, in MiB.")
    concurrency: int = Field(16, ge=1, description="Concurrent range requests per model.")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda'.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROVBOT_", env_nested_delimiter="__", extra="ignore")

    hub_endpoint: str = Field("https://huggingface.co", description="Hub API endpoint (HF_ENDPOINT style).")
    hub_token: SecretStr | None = Field(None, description="Hub token; from the environment only.")
    database_url: str = Field("sqlite:///var/provbot.db", description="SQLAlchemy URL (SQLite or PostgreSQL).")
    scan: ScanSettings = ScanSettings()

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
    return Settings()

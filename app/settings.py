"""Service configuration: one `Settings`, read from ``RECSYS_*`` environment variables.

``get_settings()`` is cached so every caller shares one instance; tests either pass a `Settings` to
`app.main.create_app` or set the environment and call ``get_settings.cache_clear()``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="ignore")

    models_dir: Path = Field(
        default=Path("models_store"),
        description="Model store directory (manifest.json + artifacts); a relative path is resolved against "
        "the working directory, so the default is the repository's models_store/ under `make serve`.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CORS origins, e.g. 'http://localhost:3000'; empty = CORS off.",
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1,
        description="Requests with a larger body get 413. The largest valid body (1000 item ids) is ~10 KB.",
    )
    torch_threads: int = Field(
        default=1,
        ge=1,
        description="Intra-op threads per worker process. Requests are sub-millisecond matrix-vector "
        "products where thread hand-off costs more than it saves; parallelism comes from uvicorn workers "
        "(one per core), and more threads per worker would oversubscribe the cores.",
    )

    @field_validator("models_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()

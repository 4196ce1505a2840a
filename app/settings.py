"""Service configuration: one `Settings`, read from ``RECSYS_*`` environment variables.

``get_settings()`` is cached so every caller shares one instance; tests either pass a `Settings` to
`app.main.create_app` or set the environment and call ``get_settings.cache_clear()``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.logs import LogFormat

MIN_API_KEY_LENGTH = 16


class Settings(BaseSettings):
    # hide_input_in_errors: a rejected RECSYS_ADMIN_API_KEY must not end up in a start-up traceback.
    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="ignore", hide_input_in_errors=True)

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
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="A request line plus headers larger than this gets 431 (app.protocol); h11's default, "
        "and nginx's 4 x 8 KB header buffers are in the same range. This API's requests need well under 1 KB.",
    )
    request_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a client has to send a whole request (head and body, at most max_body_bytes) from "
        "the moment its connection opens or its previous response ends; then 408 and the connection is closed "
        "(app.protocol). Bounds slowloris and idle sockets; the idle time between requests on a kept-alive "
        "connection is uvicorn's --timeout-keep-alive.",
    )
    torch_threads: int = Field(
        default=1,
        ge=1,
        description="Intra-op threads per worker process. Requests are sub-millisecond matrix-vector "
        "products where thread hand-off costs more than it saves; parallelism comes from uvicorn workers "
        "(one per core), and more threads per worker would oversubscribe the cores.",
    )

    ann_min_items: int = Field(
        default=20_000,
        ge=0,
        description="Catalog size from which /recommend, POST /recommend and /items/{id}/similar retrieve "
        "candidates from an approximate (FAISS) index built at load; smaller catalogs are scored exactly "
        "(ML-100K's 1,682 items stay exact). 0 forces approximate retrieval.",
    )
    ann_depth: int = Field(
        default=400,
        ge=1,
        description="Items fetched from the index per request before filters (over-fetch); the shortlist is "
        "then scored exactly. 400 keeps recall@10 >= 0.95 on the 25M-sized store (docs/scaling.md).",
    )
    ann_min_candidates: int = Field(
        default=100,
        ge=1,
        description="Shortlist items that must pass the filters; with fewer the search widens (x4), and past "
        "ann_widenings widenings every allowed item is scored exactly.",
    )
    ann_widenings: int = Field(default=3, ge=0, description="How many times a search may widen (x4 each).")
    ann_dims_per_code: int = Field(
        default=2,
        ge=1,
        description="Dimensions per 4-bit product-quantisation code: fewer is more exact and slower to scan.",
    )

    admin_api_key: SecretStr | None = Field(
        default=None,
        description="Key the X-API-Key header must carry for POST /admin/reload; unset or empty = the admin "
        f"endpoints answer 404. At least {MIN_API_KEY_LENGTH} characters, e.g. `openssl rand -hex 32`.",
    )
    log_format: LogFormat = Field(
        default="text",
        description="Log lines as 'text' (time level logger message key=value ...) or 'json' (one object per "
        "line); applies when nothing else (pytest, uvicorn --log-config) configured the root logger.",
    )
    access_log: bool = Field(
        default=False,
        description="One 'request' line per request (method, route template, status, duration, request "
        "id); off by default, like `make serve`'s --no-access-log for uvicorn's own line (which holds raw "
        "paths, i.e. user ids, and client IPs, so keep that one off). Formatting and writing the line cost "
        "~28% of GET /health's throughput; per-request figures are in /metrics either way.",
    )

    @field_validator("admin_api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("admin_api_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_API_KEY_LENGTH:
            raise ValueError(f"RECSYS_ADMIN_API_KEY must be at least {MIN_API_KEY_LENGTH} characters")
        return value

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

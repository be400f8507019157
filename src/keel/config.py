"""Settings for every keel process, read from ``KEEL_*`` environment variables.

Built once by the app / CLI / client factory and passed down; domain code never
reads ``os.environ`` itself.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


def _default_home() -> Path:
    return Path.home() / ".keel"


class Settings(BaseSettings):
    """keel configuration.

    Every field can be set through the environment with the ``KEEL_`` prefix,
    e.g. ``KEEL_DATABASE_URL=postgresql+psycopg://localhost/keel``.
    """

    model_config = SettingsConfigDict(env_prefix="KEEL_", extra="forbid", frozen=True)

    home: Path = Field(default_factory=_default_home, description="Root of local state.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata database; default: SQLite file in home.",
    )
    artifact_root: Path | None = Field(
        default=None,
        description="Directory of content-addressed artifacts; default: home/artifacts.",
    )
    redis_url: str | None = Field(default=None, description="Redis URL for shared caches.")
    host: str = Field(default="127.0.0.1", description="Address `keel server` binds to.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port `keel server` binds to.")
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes.")
    max_request_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest accepted request body (413 above)."
    )
    max_metrics_per_batch: int = Field(
        default=10_000, ge=1, description="Most metrics accepted in one batch call."
    )
    sqlite_busy_timeout_ms: int = Field(
        default=30_000, ge=0, description="How long a SQLite writer waits for the lock."
    )
    allow_pickle: bool = Field(
        default=False,
        description=(
            "Allow loading models stored as raw pickle. Unpickling runs arbitrary code, "
            "so only enable it for artifacts you trust."
        ),
    )
    model_cache_dir: Path | None = Field(
        default=None,
        description="Where registry models are unpacked for loading; default: home/cache.",
    )

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<home>/keel.db``."""
        return self.database_url or f"sqlite:///{self.home / 'keel.db'}"

    @property
    def resolved_artifact_root(self) -> Path:
        """Directory of the content-addressed artifact store."""
        return (self.artifact_root or self.home / "artifacts").expanduser()

    @property
    def resolved_model_cache_dir(self) -> Path:
        """Directory where model versions are unpacked before loading."""
        return (self.model_cache_dir or self.home / "cache" / "models").expanduser()

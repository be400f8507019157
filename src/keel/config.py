"""Settings for every keel process, read from ``KEEL_*`` environment variables.

Built once by the app / CLI / client factory and passed down; domain code never
reads ``os.environ`` itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
    artifact_min_free_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="Free space under the artifact root below which /readyz reports not ready.",
    )
    sqlite_min_free_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="Free space on the volume of each SQLite file (the database, the job "
        "queue) below which /readyz reports not ready; 0: no such check.",
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
    max_upload_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="Largest raw upload (run artifact, dataset version); 413 above.",
    )
    max_predict_rows: int = Field(
        default=10_000, ge=1, description="Most rows accepted in one predict call (422 above)."
    )
    max_filter_length: int = Field(
        default=4000, ge=16, description="Longest run-search filter expression (characters)."
    )
    max_filter_tokens: int = Field(
        default=400, ge=4, description="Most tokens in one run-search filter expression."
    )
    max_filter_depth: int = Field(
        default=16, ge=1, description="Deepest parenthesis nesting in a run-search filter."
    )
    max_filter_terms: int = Field(
        default=50, ge=1, description="Most comparisons in one run-search filter."
    )
    auth: Literal["off", "on"] = Field(
        default="off",
        description=(
            "'on': every API call except health/metrics/docs needs an API token "
            "(Authorization: Bearer). 'off': no tokens; `keel server` then refuses "
            "non-loopback addresses."
        ),
    )
    auth_cache_ttl_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="How long a verified token is trusted without re-checking (revocation lag).",
    )
    auth_failure_limit_per_token: str = Field(
        default="20/minute",
        description="Failed checks of one token id allowed before 429 (no hashing meanwhile).",
    )
    auth_failure_limit_per_client: str = Field(
        default="60/minute",
        description="Failed token checks from one client address allowed before 429.",
    )
    auth_max_parallel_checks: int = Field(
        default=2, ge=1, le=64, description="argon2 token checks run at once; 503 past a wait."
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
    trusted_model_classes: str = Field(
        default="",
        description=(
            "Comma-separated exact 'module:QualName' classes whose self-stored python-function "
            "models may be loaded (the class's module is imported and its load() runs). "
            "Empty: none, unless allow_pickle is on."
        ),
    )
    model_cache_dir: Path | None = Field(
        default=None,
        description="Where registry models are unpacked for loading; default: home/cache.",
    )

    prediction_log_dir: Path | None = Field(
        default=None,
        description="Directory of the prediction log's Parquet segments; "
        "default: artifact root/predictions.",
    )
    prediction_log_flush_interval_s: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description="Longest a logged prediction waits in memory before it is written "
        "(the kill -9 loss window); 0 = group commit: each answer waits until its "
        "prediction is on disk.",
    )
    prediction_log_max_batch: int = Field(
        default=10_000, ge=1, description="Most records the log writer puts in one segment."
    )
    prediction_log_max_queue: int = Field(
        default=100_000,
        ge=1,
        description="Records the prediction log buffers; appends beyond it are dropped and "
        "counted, never blocked.",
    )
    prediction_log_fsync: bool = Field(
        default=True, description="fsync each prediction-log segment before it becomes visible."
    )
    prediction_log_compact_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="How often the log merges the small segments it wrote (0 = never).",
    )

    # ---- serving gateway (keel.serving; docs/serving.md) ----
    serving_preload: str = Field(
        default="", description="Models warmed at start and after alias moves: 'churn@champion'."
    )
    serving_pool_max_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="Memory budget of loaded models (on-disk size)."
    )
    serving_batching: bool = Field(default=True, description="Coalesce concurrent requests.")
    serving_batch_max_size: int = Field(default=64, ge=1, description="Most rows per batch.")
    serving_batch_max_wait_us: int = Field(
        default=500, ge=0, le=1_000_000, description="Longest a row waits for a fuller batch."
    )
    serving_predict_threads: int = Field(default=2, ge=1, le=64, description="Predict threads.")
    serving_experimental_share: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Share of the predict threads run by experimental arms (canary, "
        "challenger, shadow) in a partition of their own (R-DEP-19; at least one thread).",
    )
    serving_model_threads: int = Field(
        default=1, ge=0, le=64, description="OpenMP threads per model call (0 = library default)."
    )
    serving_cache: bool = Field(default=True, description="Cache predictions by exact input.")
    serving_cache_backend: Literal["auto", "memory", "redis"] = Field(
        default="auto", description="Prediction cache store; auto = redis when KEEL_REDIS_URL."
    )
    serving_cache_max_entries: int = Field(default=100_000, ge=1, description="In-process size.")
    serving_cache_ttl_s: float = Field(default=3600.0, gt=0, description="Default cache TTL.")
    serving_cache_ttl_by_model: dict[str, float] = Field(
        default_factory=dict, description="Per-model cache TTL in seconds (JSON object)."
    )
    serving_timeout_s: float = Field(default=5.0, gt=0, description="Predict timeout (504).")
    serving_rate_limit: str = Field(
        default="1000/minute", description="Per-client limit ('limits' syntax; '' = off)."
    )
    serving_rate_limit_key_header: str = Field(
        default="X-Keel-Client",
        max_length=64,
        pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]*$",  # an HTTP header name (RFC 9110 token)
        description="Header naming the customer a request is for: each customer (within "
        "the authenticated user, when auth is on) has its own rate limit; '' = ignore.",
    )
    serving_breaker_error_rate: float = Field(
        default=0.05, gt=0, le=1, description="Error share that opens a version's breaker."
    )
    serving_breaker_window_s: float = Field(default=60.0, gt=0, description="Breaker window.")
    serving_breaker_min_requests: int = Field(
        default=20, ge=1, description="Calls in the window before the breaker may open."
    )
    serving_breaker_reset_s: float = Field(default=30.0, gt=0, description="Open → half-open.")
    serving_fallbacks: dict[str, str] = Field(
        default_factory=dict,
        description="Per-model fallback while a breaker is open: 'previous' or 'constant:<json>'.",
    )
    serving_alias_refresh_ms: int = Field(
        default=1000, ge=0, description="How often aliases are re-read (0 = every request)."
    )
    serving_max_body_bytes: int = Field(
        default=5 * 1024 * 1024, ge=1024, description="Largest predict body (413 above)."
    )
    serving_gc_freeze: bool = Field(
        default=True,
        description="Freeze the heap out of the collector's sight while a gateway runs "
        "(one full collection at start; full collections under load skip it).",
    )
    serving_gc_threshold: int = Field(
        default=10_000,
        ge=0,
        le=10_000_000,
        description="The collector's first-generation threshold while a gateway runs "
        "(0 = leave Python's 700): how many net allocations between collections.",
    )
    serving_switch_interval_ms: float = Field(
        default=0.5,
        ge=0,
        le=100,
        description="The interpreter's thread switch interval while a gateway runs "
        "(0 = leave Python's 5 ms): how long a request waits for the GIL behind the "
        "prediction-log writer.",
    )

    # ---- feature store (keel.features; docs/features.md) ----
    features_online_store: Literal["auto", "sqlite", "redis"] = Field(
        default="auto", description="Online feature store; auto = redis when KEEL_REDIS_URL."
    )
    features_online_path: Path | None = Field(
        default=None, description="SQLite file of online features; default: home/features."
    )
    features_duckdb_memory_limit: str = Field(
        default="2GB", description="DuckDB memory limit for joins; above it DuckDB spills."
    )
    features_duckdb_threads: int | None = Field(
        default=None, ge=1, le=256, description="DuckDB threads (default: all cores)."
    )
    features_registry_refresh_s: float = Field(
        default=5.0, ge=0, description="How long a process trusts its copy of the definitions."
    )
    features_deprecate_after_days: int = Field(
        default=90, ge=1, description="Features unused this long are listed as deprecated."
    )
    features_engine: Literal["local", "ray"] = Field(
        default="local",
        description="Where point-in-time lookups run: in this process, or as Ray tasks.",
    )
    ray_address: str | None = Field(
        default=None,
        description="Ray cluster for features_engine=ray (ray.init(address=...)); "
        "default: a local Ray on this machine's cores.",
    )
    features_skew_ks_threshold: float = Field(
        default=0.1, gt=0, le=1, description="KS statistic above which a feature is skewed."
    )
    features_skew_psi_threshold: float = Field(
        default=0.2, gt=0, description="PSI above which a feature is skewed."
    )
    features_skew_null_rate_threshold: float = Field(
        default=0.05, ge=0, le=1, description="Null-rate difference above which it is skewed."
    )

    # ---- jobs and the scheduler (keel.automation; docs/automation.md) ----
    jobs_queue: Literal["auto", "sqlite", "redis"] = Field(
        default="auto",
        description="Where Huey keeps job messages; auto = redis when KEEL_REDIS_URL, else "
        "a SQLite file in home.",
    )
    jobs_queue_path: Path | None = Field(
        default=None, description="SQLite file of the job queue; default: home/jobs-queue.db."
    )
    worker: Literal["on", "off"] = Field(
        default="on", description="'off': `keel server` runs no job consumer in-process."
    )
    jobs_threads: int = Field(
        default=2, ge=1, le=64, description="Job worker threads per consumer process."
    )
    jobs_lease_s: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description="A running job's lease; a job whose worker stops renewing it (killed) is "
        "re-delivered at the next tick after it expires.",
    )
    jobs_max_retries: int = Field(
        default=3, ge=0, le=100, description="Default retries of a failed job."
    )
    jobs_retry_backoff_s: float = Field(
        default=10.0, ge=0, description="First retry delay; doubled at each further attempt."
    )
    jobs_misfire_grace_s: float = Field(
        default=300.0,
        ge=60,
        description="How late a schedule's firing may still run (a worker down at the time).",
    )
    jobs_imports: str = Field(
        default="",
        description="Comma-separated modules a worker imports to register job kinds.",
    )
    executor: Literal["inline", "process", "ray"] = Field(
        default="process",
        description="Where retraining fits run: 'inline' in the job's thread, 'process' in a "
        "spawned worker process, 'ray' as Ray tasks (KEEL_RAY_ADDRESS or a local Ray; "
        "pip install 'keelml[ray]'). A retrain spec's `executor` overrides it.",
    )
    deploy_evaluate_cron: str = Field(
        default="* * * * *",
        description="When the deploy.evaluate job runs the controller over every active "
        "deployment (cron, UTC).",
    )
    deploy_retention_cron: str = Field(
        default="0 3 * * *",
        description="When the deploy.retention job archives previous champions whose "
        "retention passed (cron, UTC).",
    )

    @field_validator("deploy_evaluate_cron", "deploy_retention_cron", mode="after")
    @classmethod
    def _deploy_cron(cls, value: str) -> str:
        # A bad cron fails at start, naming the setting, not at the first deployment.
        from keel.automation.cron import validate_cron
        from keel.errors import InvalidInput

        try:
            return validate_cron(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @field_validator("database_url", mode="after")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        from keel._config_checks import check_database_url

        return None if value is None else check_database_url(value)

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        from keel._config_checks import check_redis_url

        return None if value is None else check_redis_url(value)

    @field_validator("executor", mode="after")
    @classmethod
    def _executor(cls, value: str) -> str:
        # Ray missing fails at start, naming KEEL_EXECUTOR, not at the first retraining.
        from keel.executors.ray_backend import INSTALL_HINT, ray_installed

        if value == "ray" and not ray_installed():
            raise ValueError(f"Ray is not installed: {INSTALL_HINT}")
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def trusted_model_class_names(self) -> frozenset[str]:
        """:attr:`trusted_model_classes` as a set of exact ``module:QualName`` names."""
        return frozenset(
            name.strip() for name in self.trusted_model_classes.split(",") if name.strip()
        )

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

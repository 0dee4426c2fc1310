"""Configuration, read from the environment and `.env` (DESIGN.md §7: these names are public).

One pydantic-settings class per concern; `Settings.load()` assembles them and turns a missing
or malformed value into a single `ConfigError` line that names the variable.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.errors import ConfigError

_ENV = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")


class TelegramSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="TELEGRAM_")

    bot_token: SecretStr | None = None
    api_url: str = "https://api.telegram.org"
    api_is_local: bool = False
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_path: str = "/telegram/webhook"


class OpsdeckSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="OPSDECK_")

    owner_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    secret_key: SecretStr | None = None
    data_dir: Path = Path("./data")
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("owner_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
            try:
                return [int(p) for p in parts]
            except ValueError as exc:
                msg = f"not a comma-separated list of numeric user ids: {value!r}"
                raise ValueError(msg) from exc
        if isinstance(value, int):
            return [value]
        return value


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="DATABASE_")

    url: str | None = None
    echo: bool = False


class HttpSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="HTTP_")

    host: str = "127.0.0.1"
    port: int = 8080
    # Reverse proxies in front of the web server that append to X-Forwarded-For (nginx,
    # a load balancer): claims and downloads are rate-limited per client address, which
    # only the proxy knows. 0 trusts no header (the socket's peer is the client).
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)


class PublicSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="PUBLIC_")

    base_url: str | None = None


class VaultSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="VAULT_")

    storage_url: str | None = None
    # per operator, counted in the database (so every process sees the same); 0 = no cap
    operator_max_uploads_per_hour: int = Field(default=120, ge=0)
    operator_max_bytes_per_day: int = Field(default=20 * 1024**3, ge=0)
    s3_endpoint_url: str | None = None
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    max_file_bytes: int = 2 * 1024**3
    # Rate limits, counted in the database so every process shares them.
    http_claim_limit: int = Field(default=20, ge=1)  # GET /claim per client address
    http_claim_window_seconds: float = Field(default=60.0, gt=0)
    http_download_limit: int = Field(default=240, ge=1)  # GET /files per client address
    http_download_window_seconds: float = Field(default=60.0, gt=0)
    claim_failure_limit: int = Field(default=10, ge=1)  # bad `/start <code>` per Telegram user
    claim_failure_window_seconds: float = Field(default=900.0, gt=0)


class RedditSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="REDDIT_")

    oauth_url: str = "https://oauth.reddit.com"
    www_url: str = "https://www.reddit.com"
    # Empty: each account's own `python:opsdeck:<version> (by /u/<account>)`. Set, it must
    # name a real account (a placeholder is refused at start-up): every account uses it.
    user_agent: str | None = None
    # Where image uploads go instead of the S3 address Reddit hands out with the media lease
    # (an S3-compatible stand-in or proxy); unset = Reddit's own address.
    media_upload_url: str | None = None
    # A Reddit *web* app for "Connect with Reddit" (the OAuth code flow; its redirect URI is
    # PUBLIC_BASE_URL/reddit/callback). Unset: accounts connect with their own script app.
    web_client_id: str | None = None
    web_client_secret: SecretStr | None = None


class JobSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="JOBS_")

    concurrency: int = 8
    lease_seconds: float = 60.0
    poll_seconds: float = 2.0
    backoff_base_seconds: float = 10.0
    backoff_cap_seconds: float = 3600.0
    default_max_attempts: int = 5
    shutdown_timeout_seconds: float = 30.0
    retention_days: int = 30
    audit_retention_days: int = 365
    maintenance_interval_seconds: int = 3600


class MetricsSettings(BaseSettings):
    """Prometheus metrics: on a listener of their own, never on the public HTTP port unless
    `on_http_port` is set, and then only with `Authorization: Bearer <token>`."""

    model_config = SettingsConfigDict(**_ENV, env_prefix="METRICS_")

    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)  # 0: any free port (logged at start-up)
    token: SecretStr | None = None  # required on every metrics door when set
    on_http_port: bool = False  # one port must do: /metrics on HTTP_PORT, token required


class BackupSettings(BaseSettings):
    """SQLite backups (core.backup); ignored on PostgreSQL, where they are the database's job."""

    model_config = SettingsConfigDict(**_ENV, env_prefix="BACKUP_")

    enabled: bool = True
    interval_seconds: int = Field(default=86400, ge=60)
    cron: str | None = None  # e.g. "30 3 * * *" (UTC); wins over interval_seconds
    keep: int = Field(default=7, ge=1)
    dir: Path | None = None  # default: <data dir>/backups


class OutboxSettings(BaseSettings):
    """The paced sender of `bot.outbox`. The rates belong to the bot token: every process on
    one database shares them (the budget lives in the database), so each process is given the
    whole of them, never a share."""

    model_config = SettingsConfigDict(**_ENV, env_prefix="OUTBOX_")

    # Telegram's limits for one bot: ~30 messages/s overall, 1/s per chat
    global_per_second: int = Field(default=30, ge=1, le=1000)
    per_chat_per_second: float = Field(default=1.0, gt=0, le=100)
    # slack added to every pacing step so network jitter never lets Telegram count one more
    pacing_margin_seconds: float = Field(default=0.05, ge=0, le=1)
    # rows claimed at a time, the next batch when half are sent: 5 s of sends at 30/s, so a
    # claim that waits for the database (SQLite's write lock during a claim storm: ~0.3 s)
    # never lets the sender run dry (60 did: 0.79x of the limit; 150: 0.94x, bench/README)
    batch_size: int = Field(default=150, ge=1)
    max_in_flight: int = Field(default=16, ge=1)
    lease_seconds: float = Field(default=60.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    # a send that uploads bytes (a file by reference with no file_id yet) may take this long
    upload_timeout_seconds: float = Field(default=900.0, gt=0)
    backoff_base_seconds: float = Field(default=2.0, ge=0)
    backoff_cap_seconds: float = Field(default=300.0, ge=0)
    # this many distinct chats answered 429 within a second pause all sending
    global_pause_after_chats: int = Field(default=3, ge=1)
    shutdown_timeout_seconds: float = Field(default=10.0, ge=0)


class ApiSettings(BaseSettings):
    """The HTTP API at /api/v1 (tokens are made in chat with /tokens)."""

    model_config = SettingsConfigDict(**_ENV, env_prefix="API_")

    enabled: bool = True
    requests_per_minute: int = Field(default=600, ge=1)  # per token, shared by all processes


class InboxSettings(BaseSettings):
    """The durable inbox of Telegram updates (bot.inbox, DESIGN §10)."""

    model_config = SettingsConfigDict(**_ENV, env_prefix="INBOX_")

    # an update whose process died is taken over this long after its last heartbeat
    lease_seconds: float = Field(default=15.0, gt=0)
    max_in_handling: int = Field(default=16, ge=1)  # updates handled at once per process
    # updates received and not yet stored, per process: past it the webhook waits, then 503
    max_waiting: int = Field(default=1000, ge=1)
    # the webhook answers 503 (Telegram retries) when an update is not stored within this
    ingest_timeout_seconds: float = Field(default=10.0, gt=0)


class Settings(BaseModel):
    """Everything the factory needs, with derived defaults filled in."""

    telegram: TelegramSettings
    opsdeck: OpsdeckSettings
    database: DatabaseSettings
    http: HttpSettings
    public: PublicSettings
    vault: VaultSettings
    reddit: RedditSettings
    jobs: JobSettings
    backup: BackupSettings = Field(default_factory=BackupSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    inbox: InboxSettings = Field(default_factory=InboxSettings)

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", **overrides: BaseSettings) -> Settings:
        """Read every concern; raise ConfigError with one clear line on bad values."""
        kinds = {
            "telegram": TelegramSettings,
            "opsdeck": OpsdeckSettings,
            "database": DatabaseSettings,
            "http": HttpSettings,
            "public": PublicSettings,
            "vault": VaultSettings,
            "reddit": RedditSettings,
            "jobs": JobSettings,
            "backup": BackupSettings,
            "outbox": OutboxSettings,
            "metrics": MetricsSettings,
            "api": ApiSettings,
            "inbox": InboxSettings,
        }
        parts: dict[str, BaseSettings] = {}
        for name, kind in kinds.items():
            if name in overrides:
                parts[name] = overrides[name]
                continue
            try:
                parts[name] = kind(_env_file=env_file)  # type: ignore[call-arg]
            except ValidationError as exc:
                err = exc.errors()[0]
                prefix = kind.model_config.get("env_prefix", "")
                var = f"{prefix}{err['loc'][0]}".upper() if err["loc"] else prefix
                raise ConfigError(f"{var}: {err['msg']}") from None
        return cls(**parts)

    # -- derived values -------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.opsdeck.data_dir.expanduser().resolve()

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.data_dir / 'opsdeck.db'}"

    @property
    def vault_storage_url(self) -> str:
        return self.vault.storage_url or str(self.data_dir / "vault")

    @property
    def public_base_url(self) -> str:
        return (self.public.base_url or f"http://{self.http.host}:{self.http.port}").rstrip("/")

    def require_runtime(self) -> None:
        """What the bot cannot start without; one line each, naming the variable."""
        if not self.telegram.bot_token or not self.telegram.bot_token.get_secret_value():
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN is not set: create a bot with @BotFather (/newbot) in "
                "Telegram and put the token it gives you in .env or the environment."
            )
        if not self.opsdeck.owner_ids:
            raise ConfigError(
                "OPSDECK_OWNER_IDS is not set: give the numeric Telegram user ids of the owners, "
                "comma-separated (send /start to @userinfobot to learn yours)."
            )
        if self.reddit.user_agent and self.reddit.user_agent.strip():
            from core.reddit.config import user_agent_problem  # the client only when needed

            problem = user_agent_problem(self.reddit.user_agent)
            if problem is not None:
                raise ConfigError(
                    f"REDDIT_USER_AGENT: {problem}; leave it empty (each account's own name "
                    "is used) or name the account that runs this deployment."
                )
        token = self.metrics.token.get_secret_value() if self.metrics.token else ""
        if self.metrics.on_http_port and len(token) < 16:
            raise ConfigError(
                "METRICS_TOKEN must be set (16+ characters, e.g. `openssl rand -hex 32`) with "
                "METRICS_ON_HTTP_PORT=true: metrics on the public port need a bearer token."
            )

    def secret_key(self) -> bytes:
        """OPSDECK_SECRET_KEY, or a key generated once into the data dir (mode 0600)."""
        if self.opsdeck.secret_key:
            return self.opsdeck.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            tmp.replace(path)
        return path.read_text().strip().encode()

    def webhook_secret(self) -> str:
        """TELEGRAM_WEBHOOK_SECRET, or one derived from the secret key (stable across restarts)."""
        if self.telegram.webhook_secret:
            return self.telegram.webhook_secret.get_secret_value()
        import hashlib

        return hashlib.sha256(b"webhook:" + self.secret_key()).hexdigest()[:64]

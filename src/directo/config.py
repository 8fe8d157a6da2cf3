"""Settings, read from ``DIRECTO_*`` environment variables (and CLI flags, which override them)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIRECTO_", extra="ignore")

    data_dir: Path = Field(default=Path("./directo-data"), description="SQLite file and key file")
    database_url: str | None = Field(
        default=None, description="postgresql://... to use PostgreSQL; default SQLite in data_dir"
    )
    broker_url: str | None = Field(default=None, description="redis://... for scale-out")
    hub_socket: Path | None = Field(
        default=None, description="set by `directo serve --workers N` (without a broker_url) "
        "for its workers: the Unix socket of the hub they share (core/hub.py)")
    worker_hang_seconds: float = Field(
        default=30.0, ge=1, description="with `directo serve --workers N`: a worker whose "
        "event loop has not run for this long is killed and replaced")
    master_key: str | None = Field(default=None, description="base64url, 32 bytes")
    previous_master_keys: str | None = Field(
        default=None, description="comma-separated older master keys, kept during rotation"
    )
    host: str = "127.0.0.1"
    port: int = 8000
    edit_window_seconds: int = 15 * 60
    event_retention_days: int = 30
    session_days: int = Field(default=30, ge=1, description="how long a login lasts; an older "
                              "session's token is refused and must log in again")
    request_message_limit: int = 3
    login_attempts_per_minute: int = 5
    sends_per_minute: int = 600
    max_body_bytes: int = 256 * 1024
    catch_up_seconds: float = Field(
        default=5.0, description="with a Redis broker: how often one query per process looks "
        "for streams whose wake-up was lost, the longest a lost wake-up can delay delivery "
        "(in one process wake-ups cannot be lost)")
    log_level: str = "info"
    cookie_secure: bool = False
    argon2_memory_kib: int = Field(default=65536, description="argon2id memory cost")
    argon2_time_cost: int = Field(default=3, description="argon2id passes")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            return url
        return f"sqlite:///{(self.data_dir / 'directo.db').resolve()}"

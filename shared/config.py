"""One settings class for every service, read from DEVTOOLS_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "DEVTOOLS_"


class SettingsError(ValueError):
    """A setting has a bad value; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    # Unset URLs mean "use the embedded servers under data_dir".
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".devtools")
    # Where workflows may write outside a repository (parallel_docs' output_dir); unset: data_dir.
    output_root: Path | None = None
    api_token: SecretStr | None = None
    # Tokens that may read the API but not write (a dashboard, an auditor): one token or name=token pairs.
    api_read_token: SecretStr | None = None
    # Who may scrape GET /metrics: a bearer token of its own (what Prometheus sends), besides the API
    # tokens above; or anyone, when metrics_public is true (a private network only).
    metrics_token: SecretStr | None = None
    metrics_public: bool = False
    llm: str = "none"
    # Every Redis key the platform writes starts with this prefix, so several
    # deployments (or test runs) can share one Redis without seeing each other.
    redis_prefix: str = "devtools"

    orchestrator_port: int = Field(8001, ge=1, le=65535)
    feature_dev_port: int = Field(8002, ge=1, le=65535)
    code_review_port: int = Field(8003, ge=1, le=65535)
    infrastructure_port: int = Field(8004, ge=1, le=65535)
    cicd_port: int = Field(8005, ge=1, le=65535)
    documentation_port: int = Field(8006, ge=1, le=65535)
    registry_port: int = Field(8009, ge=1, le=65535)
    host: str = "127.0.0.1"
    registry_url: str | None = None

    db_pool_min: int = Field(1, ge=0)
    db_pool_max: int = Field(10, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (or be unset for the embedded server)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (or be unset for embedded)")
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Child processes, git worktrees and deployed apps run in other folders: keep one meaning.
        return value.expanduser().resolve()

    @field_validator("output_root")
    @classmethod
    def _absolute_output_root(cls, value: Path | None) -> Path | None:
        return None if value in (None, Path("")) else value.expanduser().resolve()

    @property
    def writable_root(self) -> Path:
        """The folder outside repositories that the server may write into."""
        return self.output_root or self.data_dir

    @field_validator("llm")
    @classmethod
    def _llm_spec(cls, value: str) -> str:
        if value != "none" and ":" not in value:
            raise ValueError("must be 'none' or 'provider:model', e.g. 'openai:gpt-4o-mini'")
        return value

    @field_validator("redis_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("must be a non-empty string without spaces")
        return value

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def resolved_registry_url(self) -> str:
        return self.registry_url or f"http://{self.host}:{self.registry_port}"

    def api_token_value(self) -> str | None:
        return self.api_token.get_secret_value() if self.api_token else None

    def api_read_token_value(self) -> str | None:
        return self.api_read_token.get_secret_value() if self.api_read_token else None

    def metrics_token_value(self) -> str | None:
        return self.metrics_token.get_secret_value() if self.metrics_token else None


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; a bad value raises SettingsError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        variable = f"{ENV_PREFIX}{field.upper()}"
        got = first.get("input")
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{variable}: {message} (got {got!r})") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (cached); services call this, tests build their own."""
    return load_settings()

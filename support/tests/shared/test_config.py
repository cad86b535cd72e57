import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import SettingsError, load_settings
from shared.logging import redact

pytestmark = pytest.mark.unit


def test_defaults_use_embedded_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVTOOLS_DATABASE_URL", raising=False)
    monkeypatch.delenv("DEVTOOLS_REDIS_URL", raising=False)
    settings = load_settings()
    assert settings.embedded_postgres and settings.embedded_redis
    assert settings.data_dir == Path.cwd() / ".devtools"
    assert settings.orchestrator_port == 8001 and settings.registry_port == 8009
    assert settings.llm == "none"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DEVTOOLS_ORCHESTRATOR_PORT", "abc", "DEVTOOLS_ORCHESTRATOR_PORT"),
        ("DEVTOOLS_REGISTRY_PORT", "70000", "DEVTOOLS_REGISTRY_PORT"),
        ("DEVTOOLS_DATABASE_URL", "mysql://x", "DEVTOOLS_DATABASE_URL: must start with postgresql://"),
        ("DEVTOOLS_REDIS_URL", "http://x", "DEVTOOLS_REDIS_URL: must start with redis://"),
        ("DEVTOOLS_LLM", "gpt4", "DEVTOOLS_LLM: must be 'none' or 'provider:model'"),
        ("DEVTOOLS_LOG_LEVEL", "LOUD", "DEVTOOLS_LOG_LEVEL"),
    ],
)
def test_bad_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message
    assert repr(value) in message


def test_cli_reports_bad_setting_in_one_line_and_exits_2() -> None:
    env = {"DEVTOOLS_CICD_PORT": "-1", "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "agent_orchestrator", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: DEVTOOLS_CICD_PORT: Input should be greater than or equal to 1 (got '-1')"]
    assert "Traceback" not in result.stderr


def test_api_token_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVTOOLS_API_TOKEN", "s3cr3t-value")
    settings = load_settings()
    assert "s3cr3t-value" not in repr(settings)
    assert settings.api_token_value() == "s3cr3t-value"


def test_redact_hides_credentials() -> None:
    assert "hunter2" not in redact("postgresql://app:hunter2@db:5432/x")
    assert "abc.def" not in redact("Authorization: Bearer abc.def")
    assert "zzz" not in redact("api_key=zzz token: zzz")

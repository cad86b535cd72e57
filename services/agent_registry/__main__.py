"""`python -m services.agent_registry`: the registry on DEVTOOLS_REGISTRY_PORT (default 8009).

Pending migrations are applied at start (serialized by an advisory lock), as by `devtools db upgrade`.
"""

from __future__ import annotations

import sys

from services.agent_registry.app import create_app
from services.agent_registry.settings import RegistrySettings
from shared.backends import prepare_service_backends
from shared.config import SettingsError, load_settings
from shared.http import serve
from shared.logging import configure_logging


def main() -> int:
    try:
        settings = load_settings()
        reg = RegistrySettings()
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    settings = prepare_service_backends(settings)
    serve(create_app(settings, reg), settings.host, settings.registry_port)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the platform's shipped configuration lives: `config/` (migrations, phase files, patterns,
the task catalogue, Prometheus and Grafana files).

In a checkout it is the repository's `config/`; an installed wheel carries the same folder as
`shared/_config/` (pyproject.toml's force-include), because a top-level `config` package in
site-packages would collide with anyone else's. Every caller asks here instead of walking up from its
own file, so both layouts work.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
CHECKOUT_ROOT = _PACKAGE.parent


def _config_dir() -> Path:
    for candidate in (CHECKOUT_ROOT / "config", _PACKAGE / "_config"):
        if (candidate / "state").is_dir():
            return candidate
    return CHECKOUT_ROOT / "config"  # neither: the callers' own errors name the missing file


CONFIG_DIR = _config_dir()

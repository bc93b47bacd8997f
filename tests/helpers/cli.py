"""Run ``gridhub`` commands in-process with a test's settings."""

from __future__ import annotations

from click.testing import CliRunner, Result

from gridhub.cli import main
from gridhub.core.settings import Settings, get_settings


def run_cli(settings: Settings, *args: str) -> Result:
    """``gridhub ARGS`` in-process with the environment of ``settings``."""
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(main, list(args), env=settings.as_env(), catch_exceptions=False)
    finally:
        get_settings.cache_clear()

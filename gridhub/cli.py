"""``gridhub``: the operators' command line.

Subcommands live beside the code they drive and are imported only when
used, so ``gridhub infra status`` does not pay for importing Faust.
Register a new one in ``COMMANDS`` as ``name: "module:attribute"``.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from gridhub.core.logging import configure_logging
from gridhub.core.settings import SettingsError, get_settings

COMMANDS: dict[str, str] = {
    "infra": "gridhub.infra.cli:infra",
    "run": "gridhub.runner:run",
    "demo": "gridhub.demo:demo",
    "bench": "bench.cli:bench",
    "topics": "gridhub.ops.cli:topics",
    "dlq": "gridhub.ops.cli:dlq",
    "archive": "gridhub.ops.cli:archive",
    "replay": "gridhub.ops.cli:replay",
    "case": "gridhub.ops.cli:case",
    "simulate": "gridhub.simulate.cli:simulate",
    "import": "connectors.hotline_files.cli:import_cmd",
    "registry": "connectors.registry.cli:registry",
    "ch": "gridhub.clickhouse.cli:ch",
    "eval": "gridhub.evaluation.cli:eval_group",
    "report": "gridhub.clickhouse.report:report",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        command: Any = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=LazyGroup)
@click.version_option(package_name="gridhub")
def main() -> None:
    """gridhub: fuse, route, land and replay the 141 system's incident feeds."""
    try:
        settings = get_settings()
    except SettingsError as error:  # one line an operator can act on, exit status 2 (usage error)
        click.echo(f"error: {error}", err=True)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format)

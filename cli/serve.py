"""``ffs meta serve --config meta.toml`` and ``ffs storage serve --config storage.toml``.

One command and one TOML file per service on a real host (deploy/systemd/ runs them): every
key of the file is a field of the service's config dataclass (meta_service/server.MetaConfig,
storage_service/server.StorageConfig), read by common/config_file.py; docs/configuration.md
documents each key. ``--set KEY=VALUE`` overrides a key; ``--check`` prints the configuration
the file gives, as JSON, and exits without serving. The service runs in the foreground until
SIGTERM or SIGINT, exactly as ``python -m fireflyfs.meta_service`` / ``.storage_service`` do.
"""

from __future__ import annotations

import dataclasses
import pathlib

import click

from ._output import emit_json

config_option = click.option(
    "--config", "config_path", required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
    help="The service's TOML file (docs/configuration.md lists every key).")
set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override one key of the file (repeatable; tables by dotted key, e.g. bulk_limits.idle_s_max=30).")
check_option = click.option(
    "--check", is_flag=True,
    help="Print the configuration the file and overrides give (JSON) and exit without serving.")


def _print_config(config: object) -> None:
    emit_json(dataclasses.asdict(config))


@click.group()
def meta() -> None:
    """Run a meta server (metadata service and mgmtd) on this host."""


@meta.command("serve")
@config_option
@set_option
@check_option
def meta_serve(config_path: pathlib.Path, overrides: tuple[str, ...], check: bool) -> None:
    """Serve metadata as the TOML file says, until SIGTERM or SIGINT."""
    from fireflyfs.common.config_file import load_config
    from fireflyfs.meta_service.server import MetaConfig

    config = load_config(MetaConfig, config_path, overrides)
    if check:
        _print_config(config)
        return
    from fireflyfs.meta_service.__main__ import serve

    serve(config)


@click.group()
def storage() -> None:
    """Run a storage node on this host."""


@storage.command("serve")
@config_option
@set_option
@check_option
@click.pass_context
def storage_serve(ctx: click.Context, config_path: pathlib.Path, overrides: tuple[str, ...], check: bool) -> None:
    """Serve the node's targets as the TOML file says, until SIGTERM or SIGINT."""
    from fireflyfs.common.config_file import load_config
    from fireflyfs.storage_service.server import StorageConfig, serve
    from fireflyfs.storage_service.space_guard import SpaceReserve

    config = load_config(StorageConfig, config_path, overrides, parsers={SpaceReserve: SpaceReserve.parse})
    if check:
        _print_config(config)
        return
    ctx.exit(serve(config))

"""The ``ffs`` command: wiring of the command groups, logging, and exit codes.

    ffs cluster up|down|status --dir DIR      a local cluster (deploy/local_cluster.py)
    ffs meta serve --config meta.toml         one service on a host, from its file
    ffs storage serve --config storage.toml   (docs/configuration.md)
    ffs testbed up|down|status|shape|exec     namespace hosts behind a shaped router (root)
    ffs status URL                            health at a glance (exit 0 healthy, 1 degraded, 3 unavailable)
    ffs df URL                                space per target and node, each disk counted once
    ffs ls|stat|cat|put|get|rm|rmdir|mkdir|mv|cp|du|find|tree URL   files, through fsspec
    ffs admin nodes|targets|chains URL        cluster manager views
    ffs admin fsck URL [--repair [--yes]]     compare replicas' bytes, find orphans (docs/fsck.md)
    ffs admin scrub URL                       scrub progress, bad chunks found and repaired
    ffs admin target offline|online URL ID    hold a target offline / release it
    ffs admin chain-table create URL          a chain table (--replicas R)
    ffs admin user add|list|remove|token rotate URL ...   users and their tokens (admins)
    ffs admin node key URL ID                 a storage node's key (admins)
    ffs admin rebalance URL [--wait]          move replicas onto new nodes (fair share per node)
    ffs admin node drain|remove URL ID        empty a node of replicas; forget it once stopped
    ffs admin tls issue NAME --ca-dir D --out D --host H   a TLS certificate for a real host
    ffs whoami URL                            who your token says you are

Every command takes ``--json`` and ``--timeout SECONDS`` (before or after the
command; default 5 s to reach the metadata service), and ``ffs --version``
prints the version. Exit codes:
0 ok, 1 operation failure (message on stderr; a JSON error object with
--json), 2 usage error; ``ffs status`` also 1 degraded, 3 unavailable.
"""

from __future__ import annotations

import logging
import os
import sys

import click
import grpc

from . import admin, bench, cluster, fs, fsck, meta_migrate, moves, scrub, serve, status, testbed, users
from ._output import (EXIT_FAILURE, TIMEOUT_HELP, apply_timeout, global_params, json_option,
                      report_failure, timeout_default_s)


class FfsGroup(click.Group):
    """Turns any failure below into exit code 1 with one clear line on stderr."""

    def invoke(self, ctx: click.Context):
        from fireflyfs.client import config

        previous = config.set_process_defaults({})      # this command's --timeout ends with it
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # `ffs cat x | head`: the reader left; not an error of ours.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except grpc.RpcError as rpc_error:
            from fireflyfs.common.rpc import error_from_rpc
            report_failure(error_from_rpc(rpc_error))
            ctx.exit(EXIT_FAILURE)
        except Exception as exc:  # every operation failure: OSError, FfsError, ValueError...
            logging.getLogger("fireflyfs.cli").debug("command failed", exc_info=True)
            report_failure(exc)
            ctx.exit(EXIT_FAILURE)
        finally:
            config.set_process_defaults(previous)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fireflyfs")
    except PackageNotFoundError:
        return "unknown (not installed)"


@click.group(cls=FfsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@json_option
@click.option("--timeout", type=click.FloatRange(min=0.1), envvar="FFS_TIMEOUT", metavar="SECONDS",
              help=TIMEOUT_HELP)
@click.option("-v", "--verbose", count=True, help="Log to stderr (-v info, -vv debug).")
@click.version_option(_version(), "-V", "--version", prog_name="ffs", message="%(prog)s %(version)s")
def cli(verbose: int, timeout: float | None) -> None:
    """FireflyFS command line: local clusters, files and cluster administration."""
    from fireflyfs.common import tls

    apply_timeout(timeout if timeout is not None else timeout_default_s)

    tls.configure_client_from_env()      # every command trusts the CA in FFS_TLS_CA (clusters with TLS)
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


cli.add_command(cluster.cluster)
cli.add_command(serve.meta)        # ffs meta serve --config meta.toml
cli.add_command(serve.storage)     # ffs storage serve --config storage.toml
cli.add_command(bench.bench)       # ffs bench (bench/ffs_bench.py)
cli.add_command(testbed.testbed)   # ffs testbed up|down|status|shape|exec (deploy/testbed.py)
admin.admin.add_command(fsck.fsck)   # ffs admin fsck (its own module: admin.py has other owners)
admin.admin.add_command(scrub.scrub)   # ffs admin scrub (likewise)
admin.admin.add_command(meta_migrate.meta)   # ffs admin meta export|import (likewise)
admin.admin.add_command(users.user)      # ffs admin user add|list|remove|token rotate
admin.admin.add_command(users.node)      # ffs admin node key URL ID, node drain|remove
admin.admin.add_command(moves.rebalance)  # ffs admin rebalance URL
users.node.add_command(moves.drain)      # ffs admin node drain URL ID
users.node.add_command(moves.remove)     # ffs admin node remove URL ID
admin.admin.add_command(users.tls_group)  # ffs admin tls issue NAME --ca-dir --out --host
cli.add_command(users.whoami)
cli.add_command(status.status)   # ffs status URL: health at a glance
cli.add_command(status.df)       # ffs df URL: space per target, node and in total
cli.add_command(admin.admin)
for command in fs.COMMANDS:
    cli.add_command(command)


def _add_global_params(command: click.Command) -> None:
    """--json and --timeout after any subcommand too (`ffs cat URL --json`)."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _add_global_params(sub)
        return
    present = {name for param in command.params for name in param.opts}
    command.params.extend(param for param in global_params() if not set(param.opts) & present)


for _command in cli.commands.values():
    _add_global_params(_command)


if __name__ == "__main__":  # python -m fireflyfs.cli.main
    cli()

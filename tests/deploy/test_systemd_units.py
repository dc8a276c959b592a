"""deploy/systemd: the unit files run the serve commands, and systemd accepts them.

Method: read each unit as INI; its ExecStart must be ``ffs <service> serve --config
/etc/fireflyfs/<service>.toml``, and that command line (with --check, on a file of its own)
must parse in our CLI; where systemd-analyze exists, ``verify`` must pass on a copy whose
ExecStart points at an executable that exists here.
"""

from __future__ import annotations

import configparser
import pathlib
import shlex
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from fireflyfs.cli.main import cli

UNITS = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "systemd"
MINIMAL = {"meta": 'data_dir = "/var/lib/fireflyfs/meta"\n',
           "storage": 'node_id = 1\ndata_dir = "/srv/s"\nlisten = "10.0.0.1:8000"\nmgmtd = "10.0.0.1:7000"\n'
                      'node_key_file = "/etc/fireflyfs/node.key"\ntls_cert = "/etc/fireflyfs/tls/storage.pem"\n'
                      'tls_key = "/etc/fireflyfs/tls/storage.key"\ntls_ca = "/etc/fireflyfs/tls/ca.pem"\n'}


def _unit(service: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / f"fireflyfs-{service}.service")
    return parser


@pytest.mark.parametrize("service", ["meta", "storage"])
def test_units_run_the_serve_command_with_their_file(service, tmp_path):
    unit = _unit(service)
    command = shlex.split(unit["Service"]["ExecStart"])
    assert command[0].endswith("/ffs")
    assert command[1:] == [service, "serve", "--config", f"/etc/fireflyfs/{service}.toml"]
    assert unit["Service"]["KillSignal"] == "SIGTERM" and unit["Service"]["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    config = tmp_path / f"{service}.toml"
    config.write_text(MINIMAL[service])
    result = CliRunner().invoke(cli, [*command[1:-1], str(config), "--check"])
    assert result.exit_code == 0, result.output


def test_systemd_accepts_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    copies = []
    for unit in sorted(UNITS.glob("*.service")):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/fireflyfs/.venv/bin/ffs", shutil.which("true")))
        copies.append(str(copy))
    assert len(copies) == 2
    result = subprocess.run([analyze, "verify", *copies], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

"""common/config_file.py: TOML keys onto a config dataclass, every bad input an error naming its key.

Method: a small config dataclass with one field of each kind the services use (int, byte
count, float, bool, str, path, optional, a parsed type, a nested table, a required field and a
__post_init__ check) is loaded from files written in tmp_path; each bad input must raise
ConfigError naming the file and the key. The services' own configs are covered key by key in
tests/cli/test_serve.py.
"""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from fireflyfs.common.config_file import ConfigError, load_config
from fireflyfs.common.errors import InvalidArgument


@dataclasses.dataclass(frozen=True, slots=True)
class Share:
    percent: int

    @classmethod
    def parse(cls, text: str) -> "Share":
        if not text.endswith("%"):
            raise ValueError(f"bad share {text!r}")
        return cls(int(text[:-1]))


@dataclasses.dataclass(frozen=True, slots=True)
class Inner:
    wait_s_max: float = 1.0
    buffer_bytes_max: int = 64


@dataclasses.dataclass(frozen=True, slots=True)
class Example:
    node_id: int
    listen: str = "127.0.0.1:0"
    data_dir: pathlib.Path = pathlib.Path("/var/lib/x")
    log_file: pathlib.Path | None = None
    bulk_listen: str | None = ""
    fsync: bool = True
    timeout_ms: int = 1000
    map_size_bytes: int = 1024
    scrub_bytes_per_s: int = 10
    warn_fraction: float = 0.8
    share: Share = Share(5)
    inner: Inner = Inner()

    def __post_init__(self) -> None:
        if self.node_id < 1:
            raise ValueError(f"node_id must be >= 1, not {self.node_id}")


PARSERS = {Share: Share.parse}


def _load(tmp_path: pathlib.Path, text: str, overrides: tuple[str, ...] = ()) -> Example:
    path = tmp_path / "x.toml"
    path.write_text(text)
    return load_config(Example, path, overrides, parsers=PARSERS)


def test_every_kind_of_key(tmp_path):
    config = _load(tmp_path, '''
node_id = 3
listen = "0.0.0.0:9000"
data_dir = "/srv/x"
log_file = "/var/log/x.log"
bulk_listen = false          # optional: false is none
fsync = false
timeout_ms = 2000
map_size_bytes = "64GiB"     # a byte count takes a size
scrub_bytes_per_s = 5        # a rate does not
warn_fraction = 1            # an int will do for a float
share = "7%"                 # a parsed type

[inner]
wait_s_max = 2.5
buffer_bytes_max = "1MiB"
''')
    assert config == Example(node_id=3, listen="0.0.0.0:9000", data_dir=pathlib.Path("/srv/x"),
                             log_file=pathlib.Path("/var/log/x.log"), bulk_listen=None, fsync=False,
                             timeout_ms=2000, map_size_bytes=64 << 30, scrub_bytes_per_s=5, warn_fraction=1.0,
                             share=Share(7), inner=Inner(wait_s_max=2.5, buffer_bytes_max=1 << 20))
    assert isinstance(config.warn_fraction, float)


def test_defaults_fill_what_the_file_leaves_out(tmp_path):
    assert _load(tmp_path, "node_id = 1\n") == Example(node_id=1)


@pytest.mark.parametrize("text, message", [
    ("node_id = 1\nbogus = 2\n", "unknown key 'bogus'"),
    ("node_id = 1\n[inner]\nbogus = 2\n", "unknown key 'inner.bogus'"),
    ("listen = 'x'\n", "missing key 'node_id'"),
    ("node_id = true\n", "key 'node_id' must be an integer"),
    ("node_id = 1.5\n", "key 'node_id' must be an integer"),
    ("node_id = 1\ntimeout_ms = '2s'\n", "key 'timeout_ms' must be an integer, not '2s'"),
    ("node_id = 1\nscrub_bytes_per_s = '1MiB'\n", "key 'scrub_bytes_per_s' must be an integer"),
    ("node_id = 1\nmap_size_bytes = 'lots'\n", "key 'map_size_bytes': bad size 'lots'"),
    ("node_id = 1\nfsync = 'no'\n", "key 'fsync' must be true or false"),
    ("node_id = 1\nfsync = 0\n", "key 'fsync' must be true or false"),
    ("node_id = 1\nwarn_fraction = '80%'\n", "key 'warn_fraction' must be a number"),
    ("node_id = 1\nlisten = 9000\n", "key 'listen' must be a string"),
    ("node_id = 1\nlog_file = true\n", "key 'log_file' must be a string"),
    ("node_id = 1\nshare = 'seven'\n", "key 'share': bad share 'seven'"),
    ("node_id = 1\nshare = 7\n", "key 'share' must be a string"),
    ("node_id = 1\ninner = 3\n", "key 'inner' must be a table"),
    ("node_id = 1\n[inner]\nwait_s_max = 'soon'\n", "key 'inner.wait_s_max' must be a number"),
    ("node_id = 0\n", "node_id must be >= 1, not 0"),              # the dataclass's own check
    ("node_id = \n", "not valid TOML"),
])
def test_bad_input_names_the_file_and_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as raised:
        _load(tmp_path, text)
    assert str(tmp_path / "x.toml") in str(raised.value)
    assert isinstance(raised.value, InvalidArgument)               # the one error tree: a ValueError


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(Example, tmp_path / "absent.toml")


def test_overrides_win_over_the_file(tmp_path):
    config = _load(tmp_path, "node_id = 1\nlisten = '127.0.0.1:1'\n",
                   ("listen=0.0.0.0:9000", "timeout_ms = 5", "inner.wait_s_max=4", "fsync=false",
                    "share=9%", "map_size_bytes=2KiB"))
    assert (config.listen, config.timeout_ms, config.inner.wait_s_max, config.fsync, config.share,
            config.map_size_bytes) == ("0.0.0.0:9000", 5, 4.0, False, Share(9), 2048)
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        _load(tmp_path, "node_id = 1\n", ("listen",))
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        _load(tmp_path, "node_id = 1\n", ("bogus=1",))
    with pytest.raises(ConfigError, match="key 'timeout_ms' must be an integer"):
        _load(tmp_path, "node_id = 1\n", ("timeout_ms=soon",))
    with pytest.raises(ConfigError, match="'listen' is not a table"):
        _load(tmp_path, "node_id = 1\nlisten = 'a:1'\n", ("listen.port=3",))
    with pytest.raises(ConfigError, match="key 'listen' must be a string"):
        _load(tmp_path, "node_id = 1\n", ("listen.port=3",))

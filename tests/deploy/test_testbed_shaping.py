"""The bottleneck's tc commands and counter parsing, without root (pure functions)."""

from __future__ import annotations

import pytest

from fireflyfs.deploy import testbed_shaping as shaping
from fireflyfs.deploy.testbed_shaping import ShapingSpec
from fireflyfs.common.traffic import TrafficClass


def test_classes_mode_has_a_class_fifo_and_dscp_filter_per_traffic_class():
    commands = [" ".join(c) for c in shaping.htb_commands("to-c", ShapingSpec(rate_mbit=100))]
    assert commands[0] == "qdisc add dev to-c root handle 1: htb default 40"
    # HFReduce guaranteed nearly all of the link, storage a sliver; both may borrow all of it
    assert any("classid 1:10 htb rate 94000kbit ceil 100000kbit prio 0" in c for c in commands)
    assert any("classid 1:30 htb rate 2000kbit ceil 100000kbit prio 2" in c for c in commands)
    assert sum(" bfifo limit 1000000" in c for c in commands) == 4
    assert any("match ip dsfield 0xb8 0xfc flowid 1:10" in c for c in commands)   # EF -> HFReduce
    assert any("match ip dsfield 0x28 0xfc flowid 1:30" in c for c in commands)   # AF11 -> storage


def test_shared_mode_is_one_queue_without_filters():
    commands = [" ".join(c) for c in shaping.htb_commands("to-c", ShapingSpec(rate_mbit=50, mode="shared"))]
    assert not any(c.startswith("filter") for c in commands)
    assert sum("bfifo" in c for c in commands) == 1
    assert any("classid 1:40 htb rate 50000kbit ceil 50000kbit" in c for c in commands)


def test_dscp_overrides_reach_the_filters(monkeypatch):
    monkeypatch.setenv("FFS_DSCP_STORAGE", "AF21")
    commands = [" ".join(c) for c in shaping.htb_commands("to-c", ShapingSpec())]
    assert any("dsfield 0x48 0xfc flowid 1:30" in c for c in commands)


def test_weights_parse_and_validate():
    weights = shaping.parse_weights("hfreduce=0.8, storage=0.1")
    assert weights[TrafficClass.HFREDUCE] == 0.8 and weights[TrafficClass.CONTROL] == 0.02   # the default kept
    assert shaping.parse_weights(shaping.format_weights(weights)) == weights
    with pytest.raises(ValueError, match="more than the whole"):
        ShapingSpec(weights=shaping.parse_weights("storage=0.9"))
    spec = ShapingSpec(rate_mbit=20, weights=shaping.parse_weights("hfreduce=0.5,storage=0.3"))
    assert ShapingSpec.from_json(spec.to_json()) == spec


def test_counters_parse_tc_output():
    text = """class htb 1:1 root rate 100Mbit ceil 100Mbit burst 15Kb cburst 15Kb
 Sent 20009792 bytes 13230 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
class htb 1:10 parent 1:1 leaf 10: prio 0 rate 40Mbit ceil 100Mbit burst 15Kb cburst 15Kb
 Sent 11786150 bytes 7787 pkt (dropped 3, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
"""
    counters = shaping.parse_class_counters(text)
    assert counters["1:10"] == {"bytes": 11786150, "packets": 7787, "dropped": 3}
    assert shaping.class_name("1:1") == "total" and shaping.class_name("1:10") == "hfreduce"

"""The testbed's bottleneck: HTB classes matched on DSCP, as Fire-Flyer's SL -> VL arbitration.

On the router's link toward the client host (where storage incast and
allreduce traffic meet) an HTB root shapes everything to ``rate_mbit``:

    mode "classes": one HTB class per traffic class, each guaranteed its
        weight's share of the rate and allowed to borrow up to all of it, each
        with its own byte FIFO (its own buffer, as a virtual lane has); u32
        filters send packets to a class by the DSCP in their TOS byte, and
        anything unmarked goes to the CONTROL/other class.
    mode "shared": one class at the full rate with one FIFO: every kind of
        traffic waits in the same queue (the "no classes" baseline).

Prio orders borrowing: HFReduce and control first. In HTB a backlogged class
keeps its guaranteed rate, so the weights set how fast each class drains
under load (see the reference notes' pilot: the weight sets HFReduce's
median); the defaults guarantee HFReduce nearly all of it (WEIGHTS_DEFAULT). This kernel has HTB, TBF, u32 and FIFOs but no prio/ets/fq_codel,
so this is the whole toolkit. Command builders here are pure; the testbed
runs them.
"""

from __future__ import annotations

import dataclasses
import re

from fireflyfs.common.traffic import TrafficClass, dscp_of

CLASS_IDS = {TrafficClass.HFREDUCE: 10, TrafficClass.COLLECTIVE: 20, TrafficClass.STORAGE: 30,
             TrafficClass.CONTROL: 40}
CLASS_PRIO = {TrafficClass.HFREDUCE: 0, TrafficClass.CONTROL: 0, TrafficClass.COLLECTIVE: 1,
              TrafficClass.STORAGE: 2}
DEFAULT_CLASS = TrafficClass.CONTROL
# HFReduce is guaranteed nearly the whole link and the others a sliver each; every class may
# borrow up to all of it. So an allreduce burst drains at about the idle rate however much
# storage is queued, and storage still gets everything allreduce leaves (it borrows it). With
# 0.4/0.4 an allreduce under storage load got ~0.6 of the link and ran 1.9x its idle median;
# measured in fabric/README.md.
WEIGHTS_DEFAULT = {TrafficClass.HFREDUCE: 0.94, TrafficClass.COLLECTIVE: 0.02,
                   TrafficClass.STORAGE: 0.02, TrafficClass.CONTROL: 0.02}
HTB_OPTIONS = ["burst", "15k", "cburst", "15k", "quantum", "1514"]


@dataclasses.dataclass(frozen=True)
class ShapingSpec:
    rate_mbit: float = 100.0
    mode: str = "classes"                      # "classes" or "shared"
    weights: dict = dataclasses.field(default_factory=lambda: dict(WEIGHTS_DEFAULT))
    buffer_bytes: int = 1_000_000              # each class's byte FIFO ("shared": the one FIFO)

    def __post_init__(self) -> None:
        if self.mode not in ("classes", "shared"):
            raise ValueError(f"shaping mode must be 'classes' or 'shared', not {self.mode!r}")
        if self.rate_mbit <= 0 or self.buffer_bytes < 3000:
            raise ValueError("rate must be positive and the buffer at least two packets")
        weights = {TrafficClass(k) if isinstance(k, str) else k: float(v) for k, v in self.weights.items()}
        if set(weights) != set(TrafficClass) or any(w <= 0 for w in weights.values()):
            raise ValueError("weights need a positive share for every traffic class")
        if sum(weights.values()) > 1.0 + 1e-9:
            raise ValueError(f"weights add up to {sum(weights.values()):.2f}, more than the whole rate")
        object.__setattr__(self, "weights", weights)

    def to_json(self) -> dict:
        return {"rate_mbit": self.rate_mbit, "mode": self.mode, "buffer_bytes": self.buffer_bytes,
                "weights": {c.value: w for c, w in self.weights.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "ShapingSpec":
        return cls(rate_mbit=data["rate_mbit"], mode=data["mode"], buffer_bytes=data["buffer_bytes"],
                   weights=data["weights"])


def format_weights(weights: dict) -> str:
    """{TrafficClass: share} -> 'hfreduce=0.94,collective=0.02,...' (parse_weights' input)."""
    return ",".join(f"{cls.value}={share:g}" for cls, share in weights.items())


def parse_weights(text: str) -> dict:
    """'hfreduce=0.4,storage=0.4,collective=0.1,control=0.1' -> {TrafficClass: share}; classes not
    named keep their default share."""
    weights = dict(WEIGHTS_DEFAULT)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        weights[TrafficClass(name.strip().lower())] = float(value)
    return weights


def _kbit(mbit: float) -> str:
    return f"{max(8, int(round(mbit * 1000)))}kbit"


def htb_commands(device: str, spec: ShapingSpec) -> list[list[str]]:
    """tc arguments (after ``tc -n NS``) that install spec on device, in order."""
    rate = _kbit(spec.rate_mbit)
    default_id = CLASS_IDS[DEFAULT_CLASS]
    commands = [
        ["qdisc", "add", "dev", device, "root", "handle", "1:", "htb", "default", str(default_id)],
        ["class", "add", "dev", device, "parent", "1:", "classid", "1:1", "htb", "rate", rate,
         "ceil", rate, *HTB_OPTIONS],
    ]
    if spec.mode == "shared":
        commands += [
            ["class", "add", "dev", device, "parent", "1:1", "classid", f"1:{default_id}", "htb",
             "rate", rate, "ceil", rate, "prio", "0", *HTB_OPTIONS],
            ["qdisc", "add", "dev", device, "parent", f"1:{default_id}", "handle", f"{default_id}:",
             "bfifo", "limit", str(spec.buffer_bytes)],
        ]
        return commands
    for cls, class_id in CLASS_IDS.items():
        commands.append(["class", "add", "dev", device, "parent", "1:1", "classid", f"1:{class_id}",
                         "htb", "rate", _kbit(spec.rate_mbit * spec.weights[cls]), "ceil", rate,
                         "prio", str(CLASS_PRIO[cls]), *HTB_OPTIONS])
        commands.append(["qdisc", "add", "dev", device, "parent", f"1:{class_id}",
                         "handle", f"{class_id}:", "bfifo", "limit", str(spec.buffer_bytes)])
    for filter_prio, (cls, class_id) in enumerate(CLASS_IDS.items(), start=1):
        commands.append(["filter", "add", "dev", device, "parent", "1:", "protocol", "ip",
                         "prio", str(filter_prio), "u32", "match", "ip", "dsfield",
                         f"{dscp_of(cls) << 2:#04x}", "0xfc", "flowid", f"1:{class_id}"])
    return commands


def remove_command(device: str) -> list[str]:
    return ["qdisc", "del", "dev", device, "root"]


_CLASS_LINE = re.compile(r"class htb (\S+) .*?\n\s*Sent (\d+) bytes (\d+) pkt \(dropped (\d+)", re.S)


def parse_class_counters(tc_output: str) -> dict[str, dict[str, int]]:
    """``tc -s class show`` text -> {class id: {bytes, packets, dropped}}."""
    return {classid: {"bytes": int(sent), "packets": int(packets), "dropped": int(dropped)}
            for classid, sent, packets, dropped in _CLASS_LINE.findall(tc_output)}


def class_name(classid: str) -> str:
    """'1:10' -> 'hfreduce'; the parent '1:1' -> 'total'."""
    if classid == "1:1":
        return "total"
    for cls, class_id in CLASS_IDS.items():
        if classid == f"1:{class_id}":
            return cls.value
    return classid

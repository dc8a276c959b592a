"""Replies that list many items stay under one message: a byte budget per reply.

Why: a gRPC message is capped (limits.grpc_message_bytes_max), and a reply
listing its largest items would not fit: 10,000 BatchStat results with 16 KiB
of inline data each are 160 MiB, a Find page of 10,000 entries with 4 KiB
paths and 4 KiB symlink targets over 80 MiB. So BatchStat, List and Find stop
adding items once ``limits.meta_reply_bytes_max`` is reached and say "more";
the client asks again from where the reply stopped. The first item always
goes in, so every reply makes progress.
"""

from __future__ import annotations

from fireflyfs.common import limits

ITEM_FRAMING_BYTES = 8   # a repeated field's tag and length prefix, rounded up


class ReplyBudget:
    """Counts the serialized size of the items added to one reply."""

    def __init__(self, bytes_max: int | None = None) -> None:
        self.bytes_max = limits.meta_reply_bytes_max if bytes_max is None else bytes_max
        self.used_bytes = 0
        self.items = 0

    def admits(self, item, extra_bytes: int = 0) -> bool:
        """Count item (a message) in if it fits, or if it is the first; False: the reply is full.
        extra_bytes: what the servicer adds to it afterwards (a capability)."""
        size = item.ByteSize() + ITEM_FRAMING_BYTES + extra_bytes
        if self.items and self.used_bytes + size > self.bytes_max:
            return False
        self.used_bytes += size
        self.items += 1
        return True

"""In-memory ChunkStore fake for pure-logic unit tests of the metadata service.

It keeps only chunk extents (index -> bytes written), which is all the
namespace and GC ask storage about. Process-level tests use real processes.
"""

from __future__ import annotations

from fireflyfs.common.errors import Unavailable
from fireflyfs.common.layout import Layout


class FakeChunkStore:
    def __init__(self) -> None:
        self.chunks: dict[int, dict[int, int]] = {}  # inode -> chunk index -> bytes in chunk
        self.fail = False
        self.calls: list[tuple] = []

    def _check(self, *call) -> None:
        self.calls.append(call)
        if self.fail:
            raise Unavailable("fake storage down")

    def write(self, inode_id: int, layout: Layout, offset: int, length: int) -> None:
        """What a client write would leave on storage."""
        chunks = self.chunks.setdefault(inode_id, {})
        for index, within, piece in layout.chunk_ranges(offset, length):
            chunks[index] = max(chunks.get(index, 0), within + piece)

    def file_length_from_chunks(self, inode_id: int, layout: Layout) -> int:
        self._check("length", inode_id)
        chunks = self.chunks.get(inode_id, {})
        return max((index * layout.chunk_size + size for index, size in chunks.items()), default=0)

    def truncate(self, inode_id: int, layout: Layout, new_length: int) -> None:
        self._check("truncate", inode_id, new_length)
        chunks = self.chunks.get(inode_id, {})
        last, within = divmod(new_length, layout.chunk_size)
        for index in list(chunks):
            if index > last or (index == last and within == 0):
                del chunks[index]
            elif index == last:
                chunks[index] = min(chunks[index], within)

    def write_bytes(self, inode_id: int, layout: Layout, offset: int, data: bytes) -> None:
        self._check("write", inode_id, offset, len(data))
        self.write(inode_id, layout, offset, len(data))

    def remove_file_chunks(self, inode_id: int, layout: Layout) -> int:
        self._check("remove", inode_id)
        return len(self.chunks.pop(inode_id, {}))

    def copy_file_chunks(self, src_inode: int, src_layout: Layout, length: int, dst_inode: int,
                         dst_layout: Layout) -> None:
        self._check("copy", src_inode, dst_inode)
        end = min(length, self.file_length_from_chunks(src_inode, src_layout))
        if end:
            self.write(dst_inode, dst_layout, 0, end)

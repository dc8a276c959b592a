"""Every size and count limit of FireflyFS, in one place.

Names end in their unit or in ``_max``/``_min``; the checks at the bottom keep
the relations between them true at import time (they raise even under -O).
"""

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

name_bytes_max = 255                  # one path component, as POSIX NAME_MAX
path_bytes_max = 4096                 # whole path, as POSIX PATH_MAX
path_depth_max = 64                   # directory depth, as 3FS
symlink_follow_max = 8                # symlinks followed while resolving one path
symlink_target_bytes_max = 4096

chunk_size_min = 64 * KiB
chunk_size_max = 64 * MiB
chunk_size_default = 4 * MiB
stripe_size_max = 256
stripe_size_default = 16

checksum_block_bytes_default = 16 * KiB   # CRC32C block inside a chunk; measured, see storage_service/chunk_engine.py
checksum_block_bytes_min = 4 * KiB

list_page_entries_default = 1000
list_page_entries_max = 10000
batch_read_ios_max = 4096
batch_stat_paths_max = 10000
stat_inodes_ids_max = 10000              # inode ids in one Meta.StatInodes (fsck)
query_last_chunk_queries_max = batch_read_ios_max
write_dedup_entries_max = 65536          # remembered (client, channel) write replies per target
io_threads_default = 16                  # parallel chunk IOs per client process
batch_create_requests_max = 1024         # creates in one Meta.BatchCreate
batch_create_concurrent_max = 16         # of them, run at once (their commits share fdatasyncs)
inline_data_bytes_max = 16 * KiB          # a file this small may live in the metadata store (meta_service/inline.py)
group_commit_writes_max = 1024           # LMDB writes sharing one durable commit (common/lmdb_commit.py)

# gRPC messages carry at most one chunk plus framing.
grpc_message_bytes_max = chunk_size_max + 4 * MiB
batch_read_reply_bytes_max = grpc_message_bytes_max - 2 * MiB   # storage rejects a BatchRead asking more
batch_read_request_bytes_target = 32 * MiB                       # the client splits batches at this size


def is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _check() -> None:
    for name, value in (("chunk_size_min", chunk_size_min), ("chunk_size_max", chunk_size_max),
                        ("chunk_size_default", chunk_size_default),
                        ("checksum_block_bytes_default", checksum_block_bytes_default)):
        if not is_power_of_two(value):
            raise AssertionError(f"{name} must be a power of two")
    if not chunk_size_min <= chunk_size_default <= chunk_size_max:
        raise AssertionError("chunk_size_default out of range")
    if checksum_block_bytes_default > chunk_size_min:
        raise AssertionError("a checksum block must fit in the smallest chunk")
    if grpc_message_bytes_max <= chunk_size_max:
        raise AssertionError("a gRPC message must carry a whole chunk")
    if not 1 <= stripe_size_default <= stripe_size_max:
        raise AssertionError("stripe_size_default out of range")
    if not checksum_block_bytes_min <= checksum_block_bytes_default:
        raise AssertionError("checksum block default below its minimum")
    if not chunk_size_max <= batch_read_reply_bytes_max:
        raise AssertionError("a BatchRead reply must carry a whole chunk")
    if batch_read_request_bytes_target > batch_read_reply_bytes_max:
        raise AssertionError("client batches must fit what storage accepts")
    if list_page_entries_default > list_page_entries_max:
        raise AssertionError("list page default exceeds its max")
    if not 1 <= batch_create_concurrent_max <= batch_create_requests_max:
        raise AssertionError("batch_create_concurrent_max out of range")
    if group_commit_writes_max < 1:
        raise AssertionError("a group commit holds at least one write")
    if not 0 < inline_data_bytes_max < chunk_size_min:
        raise AssertionError("inline data must fit in one chunk of any layout")


_check()

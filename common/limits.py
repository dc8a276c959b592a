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
dir_times_granularity_ns = 1_000_000_000   # a directory's mtime/ctime move at most once a second (inodes.touch_dir)
trash_batch_entries_max = 200            # entries one transaction of the trash emptier removes (trash.py):
                                         # about 2 reads and 3 writes each, inside etcd's --max-txn-ops
chunk_metas_verify_bytes_max = 64 * MiB  # chunk bytes re-read for one verifying GetChunkMetas page (fsck)
chunk_metas_bad_blocks_max = 16          # rotten block indexes listed per chunk in that page (the count is whole)
query_last_chunk_queries_max = batch_read_ios_max
write_dedup_entries_max = 65536          # remembered (client, channel) write replies per target
io_threads_default = 16                  # parallel chunk IOs per client process
batch_create_requests_max = 1024         # creates in one Meta.BatchCreate
batch_create_concurrent_max = 16         # of them, run at once (their commits share fdatasyncs)
inline_data_bytes_max = 16 * KiB          # a file this small may live in the metadata store (meta_service/inline.py)
renew_sessions_refs_max = 65536          # write sessions named in one Meta.RenewSessions
repair_queue_entries_max = 1024          # chunks waiting for repair on one storage node (storage_service/repair.py)
group_commit_writes_max = 1024           # LMDB writes sharing one durable commit (common/lmdb_commit.py)

# gRPC messages carry at most one chunk plus framing.
grpc_message_bytes_max = chunk_size_max + 4 * MiB
batch_read_reply_bytes_max = grpc_message_bytes_max - 2 * MiB   # storage rejects a BatchRead asking more
batch_read_request_bytes_target = 32 * MiB                       # the client splits batches at this size
# A Meta reply that lists (BatchStat, List, Find) stops adding items at this size and says "more":
# 10,000 inline files of 16 KiB, or as many 4 KiB paths with 4 KiB symlink targets, would not fit.
meta_reply_bytes_max = 16 * MiB

# LMDB maps: address space, not disk (data.mdb grows only as pages are used); a
# full map doubles up to its max (common/lmdb_env.py).
meta_map_bytes_default = 16 * GiB
meta_map_bytes_max_default = 1024 * GiB
target_map_bytes_default = 1 * GiB        # ~1 KiB of chunk meta per 4 MiB chunk: ~4 TiB of data
target_map_bytes_max_default = 64 * GiB
space_warn_fraction_default = 0.8         # warn once when a map or a disk passes this fill
target_reserve_fraction_default = 0.05    # storage refuses new chunk bytes below this much free...
target_reserve_bytes_default = 1 * GiB    # ...or this many bytes, whichever is smaller

# The storage node's bulk listener (storage_service/bulk_server.py): defaults of its --bulk-* flags.
bulk_connections_max = 1024               # open connections per listener (one thread each)
bulk_connections_per_peer_max = 256       # from one client address; more are closed at accept
bulk_inflight_bytes_max = 256 * MiB       # request buffers held at once per listener, reused ones included
bulk_inflight_bytes_per_peer_max = 128 * MiB   # of those, by requests from one client address
bulk_budget_wait_s_max = 10.0             # a request waits this long for buffer budget, then Unavailable
bulk_idle_s_max = 300.0                   # a connection with no request for this long is closed
bulk_request_s_max = 60.0                 # receiving one request frame, or sending one reply, whole

# etcd (the replicated metadata engine): members are started with these flags, and the
# client refuses bigger transactions itself (proto/etcd/client.py). etcd's defaults are
# 128 ops and 1.5 MiB; raised so one metadata transaction (a batch of creates with their
# dentries, inodes and inline bytes) fits, below the 10 MiB etcd advises as a ceiling.
etcd_txn_ops_max = 1024                   # etcd --max-txn-ops
etcd_request_bytes_max = 8 * MiB          # etcd --max-request-bytes
etcd_history_retention_hours = 1          # etcd --auto-compaction-retention (periodic): older revisions go


def is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


# --- trust (common/auth.py, meta_service/users.py) ---
# An accepted token is remembered this long: a removed user or rotated token stops working within it
# on every meta server, and a busy client costs no store read per call.
auth_cache_s = 2.0
auth_cache_entries_max = 10_000
# Chunk capabilities (common/capability.py): signing keys rotate every hour; a capability lives at
# most that long (clients ask meta for a fresh one before it ends).
capability_rotation_ms = 3_600_000
capability_ttl_ms = 3_600_000
capability_refresh_before_ms = 300_000     # a client renews a capability this long before it expires
capability_cache_entries_max = 100_000


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
    if chunk_metas_verify_bytes_max < chunk_size_max:
        raise AssertionError("a verifying chunk metas page must be able to hold the largest chunk")
    if not path_bytes_max + symlink_target_bytes_max + inline_data_bytes_max < meta_reply_bytes_max \
            < grpc_message_bytes_max // 2:
        raise AssertionError("a Meta reply must hold its largest item and fit a message with room to spare")
    if not (meta_map_bytes_default <= meta_map_bytes_max_default
            and target_map_bytes_default <= target_map_bytes_max_default):
        raise AssertionError("a map's default size exceeds its max")
    if not (0 < space_warn_fraction_default < 1 and 0 <= target_reserve_fraction_default < 1):
        raise AssertionError("space fractions out of range")
    if not 1 <= batch_create_concurrent_max <= batch_create_requests_max:
        raise AssertionError("batch_create_concurrent_max out of range")
    if group_commit_writes_max < 1:
        raise AssertionError("a group commit holds at least one write")
    if not 0 < inline_data_bytes_max < chunk_size_min:
        raise AssertionError("inline data must fit in one chunk of any layout")
    if not chunk_size_max <= bulk_inflight_bytes_per_peer_max <= bulk_inflight_bytes_max:
        raise AssertionError("a peer's share of the bulk buffer budget must hold the largest write")
    if not 1 <= bulk_connections_per_peer_max <= bulk_connections_max:
        raise AssertionError("bulk per-peer connection cap out of range")
    if not 0 < bulk_budget_wait_s_max < bulk_request_s_max:
        raise AssertionError("a request's wait for budget must end within its deadline")

    if not (1 <= etcd_txn_ops_max and inline_data_bytes_max < etcd_request_bytes_max <= 10 * MiB
            and etcd_request_bytes_max < grpc_message_bytes_max):
        raise AssertionError("etcd limits out of range: a request holds an inline file, stays under "
                             "etcd's advised 10 MiB and fits a gRPC message")


_check()

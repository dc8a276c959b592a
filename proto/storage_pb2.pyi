from fireflyfs.proto import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UpdateKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPDATE_WRITE: _ClassVar[UpdateKind]
    UPDATE_TRUNCATE: _ClassVar[UpdateKind]
UPDATE_WRITE: UpdateKind
UPDATE_TRUNCATE: UpdateKind

class IoStatus(_message.Message):
    __slots__ = ("error", "message")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    error: str
    message: str
    def __init__(self, error: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ReadIO(_message.Message):
    __slots__ = ("chain_id", "chain_version", "chunk", "offset", "length")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    chain_version: int
    chunk: _types_pb2.ChunkId
    offset: int
    length: int
    def __init__(self, chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., chunk: _Optional[_Union[_types_pb2.ChunkId, _Mapping]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class BatchReadRequest(_message.Message):
    __slots__ = ("ios", "verify_checksum", "capabilities")
    IOS_FIELD_NUMBER: _ClassVar[int]
    VERIFY_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    ios: _containers.RepeatedCompositeFieldContainer[ReadIO]
    verify_checksum: bool
    capabilities: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, ios: _Optional[_Iterable[_Union[ReadIO, _Mapping]]] = ..., verify_checksum: _Optional[bool] = ..., capabilities: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ReadResult(_message.Message):
    __slots__ = ("status", "data", "checksum", "chunk_length", "commit_version")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    CHUNK_LENGTH_FIELD_NUMBER: _ClassVar[int]
    COMMIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    status: IoStatus
    data: bytes
    checksum: int
    chunk_length: int
    commit_version: int
    def __init__(self, status: _Optional[_Union[IoStatus, _Mapping]] = ..., data: _Optional[bytes] = ..., checksum: _Optional[int] = ..., chunk_length: _Optional[int] = ..., commit_version: _Optional[int] = ...) -> None: ...

class BatchReadReply(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ReadResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ReadResult, _Mapping]]] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("chain_id", "chain_version", "chunk", "offset", "data", "checksum", "chunk_size", "client_id", "channel", "seqnum", "capability")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SEQNUM_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    chain_version: int
    chunk: _types_pb2.ChunkId
    offset: int
    data: bytes
    checksum: int
    chunk_size: int
    client_id: str
    channel: int
    seqnum: int
    capability: bytes
    def __init__(self, chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., chunk: _Optional[_Union[_types_pb2.ChunkId, _Mapping]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., checksum: _Optional[int] = ..., chunk_size: _Optional[int] = ..., client_id: _Optional[str] = ..., channel: _Optional[int] = ..., seqnum: _Optional[int] = ..., capability: _Optional[bytes] = ...) -> None: ...

class WriteReply(_message.Message):
    __slots__ = ("commit_version", "chunk_length", "chunk_checksum")
    COMMIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    commit_version: int
    chunk_length: int
    chunk_checksum: int
    def __init__(self, commit_version: _Optional[int] = ..., chunk_length: _Optional[int] = ..., chunk_checksum: _Optional[int] = ...) -> None: ...

class UpdateRequest(_message.Message):
    __slots__ = ("write", "update_version", "full_replace", "from_target", "to_target", "kind", "truncate_length", "chunk_chain_version")
    WRITE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    FULL_REPLACE_FIELD_NUMBER: _ClassVar[int]
    FROM_TARGET_FIELD_NUMBER: _ClassVar[int]
    TO_TARGET_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    write: WriteRequest
    update_version: int
    full_replace: bool
    from_target: int
    to_target: int
    kind: UpdateKind
    truncate_length: int
    chunk_chain_version: int
    def __init__(self, write: _Optional[_Union[WriteRequest, _Mapping]] = ..., update_version: _Optional[int] = ..., full_replace: _Optional[bool] = ..., from_target: _Optional[int] = ..., to_target: _Optional[int] = ..., kind: _Optional[_Union[UpdateKind, str]] = ..., truncate_length: _Optional[int] = ..., chunk_chain_version: _Optional[int] = ...) -> None: ...

class UpdateReply(_message.Message):
    __slots__ = ("commit_version", "chunk_checksum", "chunk_length")
    COMMIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    CHUNK_LENGTH_FIELD_NUMBER: _ClassVar[int]
    commit_version: int
    chunk_checksum: int
    chunk_length: int
    def __init__(self, commit_version: _Optional[int] = ..., chunk_checksum: _Optional[int] = ..., chunk_length: _Optional[int] = ...) -> None: ...

class TruncateChunkRequest(_message.Message):
    __slots__ = ("chain_id", "chain_version", "chunk", "length", "chunk_size")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    chain_version: int
    chunk: _types_pb2.ChunkId
    length: int
    chunk_size: int
    def __init__(self, chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., chunk: _Optional[_Union[_types_pb2.ChunkId, _Mapping]] = ..., length: _Optional[int] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class TruncateChunkReply(_message.Message):
    __slots__ = ("commit_version", "chunk_length")
    COMMIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_LENGTH_FIELD_NUMBER: _ClassVar[int]
    commit_version: int
    chunk_length: int
    def __init__(self, commit_version: _Optional[int] = ..., chunk_length: _Optional[int] = ...) -> None: ...

class RemoveChunksRequest(_message.Message):
    __slots__ = ("chain_id", "chain_version", "inode", "begin_index", "end_index", "from_target", "to_target")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    BEGIN_INDEX_FIELD_NUMBER: _ClassVar[int]
    END_INDEX_FIELD_NUMBER: _ClassVar[int]
    FROM_TARGET_FIELD_NUMBER: _ClassVar[int]
    TO_TARGET_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    chain_version: int
    inode: int
    begin_index: int
    end_index: int
    from_target: int
    to_target: int
    def __init__(self, chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., inode: _Optional[int] = ..., begin_index: _Optional[int] = ..., end_index: _Optional[int] = ..., from_target: _Optional[int] = ..., to_target: _Optional[int] = ...) -> None: ...

class RemoveChunksReply(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

class LastChunkQuery(_message.Message):
    __slots__ = ("chain_id", "chain_version", "inode")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    chain_version: int
    inode: int
    def __init__(self, chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., inode: _Optional[int] = ...) -> None: ...

class LastChunkResult(_message.Message):
    __slots__ = ("status", "found", "last_index", "last_length", "chunk_count")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    status: IoStatus
    found: bool
    last_index: int
    last_length: int
    chunk_count: int
    def __init__(self, status: _Optional[_Union[IoStatus, _Mapping]] = ..., found: _Optional[bool] = ..., last_index: _Optional[int] = ..., last_length: _Optional[int] = ..., chunk_count: _Optional[int] = ...) -> None: ...

class QueryLastChunkRequest(_message.Message):
    __slots__ = ("queries", "capabilities")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[LastChunkQuery]
    capabilities: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, queries: _Optional[_Iterable[_Union[LastChunkQuery, _Mapping]]] = ..., capabilities: _Optional[_Iterable[bytes]] = ...) -> None: ...

class QueryLastChunkReply(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[LastChunkResult]
    def __init__(self, results: _Optional[_Iterable[_Union[LastChunkResult, _Mapping]]] = ...) -> None: ...

class TargetSpace(_message.Message):
    __slots__ = ("target_id", "capacity_bytes", "used_bytes", "free_bytes", "chunk_count", "map_used_bytes", "map_bytes", "map_bytes_max", "reserve_bytes", "warning")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAP_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAP_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAP_BYTES_MAX_FIELD_NUMBER: _ClassVar[int]
    RESERVE_BYTES_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    chunk_count: int
    map_used_bytes: int
    map_bytes: int
    map_bytes_max: int
    reserve_bytes: int
    warning: str
    def __init__(self, target_id: _Optional[int] = ..., capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., chunk_count: _Optional[int] = ..., map_used_bytes: _Optional[int] = ..., map_bytes: _Optional[int] = ..., map_bytes_max: _Optional[int] = ..., reserve_bytes: _Optional[int] = ..., warning: _Optional[str] = ...) -> None: ...

class SpaceInfoReply(_message.Message):
    __slots__ = ("targets",)
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[TargetSpace]
    def __init__(self, targets: _Optional[_Iterable[_Union[TargetSpace, _Mapping]]] = ...) -> None: ...

class ChunkMetaInfo(_message.Message):
    __slots__ = ("chunk", "length", "commit_version", "update_version", "chain_version", "chunk_checksum", "verified", "content_crc", "bad_block_count", "bad_blocks")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    COMMIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    CONTENT_CRC_FIELD_NUMBER: _ClassVar[int]
    BAD_BLOCK_COUNT_FIELD_NUMBER: _ClassVar[int]
    BAD_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    chunk: _types_pb2.ChunkId
    length: int
    commit_version: int
    update_version: int
    chain_version: int
    chunk_checksum: int
    verified: bool
    content_crc: int
    bad_block_count: int
    bad_blocks: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, chunk: _Optional[_Union[_types_pb2.ChunkId, _Mapping]] = ..., length: _Optional[int] = ..., commit_version: _Optional[int] = ..., update_version: _Optional[int] = ..., chain_version: _Optional[int] = ..., chunk_checksum: _Optional[int] = ..., verified: _Optional[bool] = ..., content_crc: _Optional[int] = ..., bad_block_count: _Optional[int] = ..., bad_blocks: _Optional[_Iterable[int]] = ...) -> None: ...

class GetChunkMetasRequest(_message.Message):
    __slots__ = ("target_id", "start_after", "limit", "verify")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    start_after: _types_pb2.ChunkId
    limit: int
    verify: bool
    def __init__(self, target_id: _Optional[int] = ..., start_after: _Optional[_Union[_types_pb2.ChunkId, _Mapping]] = ..., limit: _Optional[int] = ..., verify: _Optional[bool] = ...) -> None: ...

class GetChunkMetasReply(_message.Message):
    __slots__ = ("metas", "more")
    METAS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    metas: _containers.RepeatedCompositeFieldContainer[ChunkMetaInfo]
    more: bool
    def __init__(self, metas: _Optional[_Iterable[_Union[ChunkMetaInfo, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class SyncStartRequest(_message.Message):
    __slots__ = ("chain_id", "chain_version", "target_id", "start_after", "limit")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    chain_version: int
    target_id: int
    start_after: _types_pb2.ChunkId
    limit: int
    def __init__(self, chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., target_id: _Optional[int] = ..., start_after: _Optional[_Union[_types_pb2.ChunkId, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class SyncStartReply(_message.Message):
    __slots__ = ("metas", "more")
    METAS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    metas: _containers.RepeatedCompositeFieldContainer[ChunkMetaInfo]
    more: bool
    def __init__(self, metas: _Optional[_Iterable[_Union[ChunkMetaInfo, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class SyncDoneRequest(_message.Message):
    __slots__ = ("chain_id", "chain_version", "target_id")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    chain_version: int
    target_id: int
    def __init__(self, chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., target_id: _Optional[int] = ...) -> None: ...

class RemoveChunkRequest(_message.Message):
    __slots__ = ("chain_id", "chain_version", "target_id", "chunk")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    chain_version: int
    target_id: int
    chunk: _types_pb2.ChunkId
    def __init__(self, chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., target_id: _Optional[int] = ..., chunk: _Optional[_Union[_types_pb2.ChunkId, _Mapping]] = ...) -> None: ...

class ReportBadChunkRequest(_message.Message):
    __slots__ = ("target_id", "chunk", "capability")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    chunk: _types_pb2.ChunkId
    capability: bytes
    def __init__(self, target_id: _Optional[int] = ..., chunk: _Optional[_Union[_types_pb2.ChunkId, _Mapping]] = ..., capability: _Optional[bytes] = ...) -> None: ...

class ReportBadChunkReply(_message.Message):
    __slots__ = ("queued",)
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    queued: bool
    def __init__(self, queued: _Optional[bool] = ...) -> None: ...

class TargetScrubStatus(_message.Message):
    __slots__ = ("target_id", "pass_started_s", "pass_chunks_checked", "pass_bytes_checked", "pass_bytes_total", "last_pass_ended_s", "last_pass_duration_s", "passes_completed", "bad_found", "repaired", "unrepairable", "reports_received", "reports_unconfirmed", "repairs_queued")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    PASS_STARTED_S_FIELD_NUMBER: _ClassVar[int]
    PASS_CHUNKS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    PASS_BYTES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    PASS_BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LAST_PASS_ENDED_S_FIELD_NUMBER: _ClassVar[int]
    LAST_PASS_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    PASSES_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    BAD_FOUND_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_FIELD_NUMBER: _ClassVar[int]
    UNREPAIRABLE_FIELD_NUMBER: _ClassVar[int]
    REPORTS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    REPORTS_UNCONFIRMED_FIELD_NUMBER: _ClassVar[int]
    REPAIRS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    pass_started_s: float
    pass_chunks_checked: int
    pass_bytes_checked: int
    pass_bytes_total: int
    last_pass_ended_s: float
    last_pass_duration_s: float
    passes_completed: int
    bad_found: int
    repaired: int
    unrepairable: int
    reports_received: int
    reports_unconfirmed: int
    repairs_queued: int
    def __init__(self, target_id: _Optional[int] = ..., pass_started_s: _Optional[float] = ..., pass_chunks_checked: _Optional[int] = ..., pass_bytes_checked: _Optional[int] = ..., pass_bytes_total: _Optional[int] = ..., last_pass_ended_s: _Optional[float] = ..., last_pass_duration_s: _Optional[float] = ..., passes_completed: _Optional[int] = ..., bad_found: _Optional[int] = ..., repaired: _Optional[int] = ..., unrepairable: _Optional[int] = ..., reports_received: _Optional[int] = ..., reports_unconfirmed: _Optional[int] = ..., repairs_queued: _Optional[int] = ...) -> None: ...

class ScrubStatusReply(_message.Message):
    __slots__ = ("targets", "rate_bytes_per_s")
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    RATE_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[TargetScrubStatus]
    rate_bytes_per_s: int
    def __init__(self, targets: _Optional[_Iterable[_Union[TargetScrubStatus, _Mapping]]] = ..., rate_bytes_per_s: _Optional[int] = ...) -> None: ...

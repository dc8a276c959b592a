from fireflyfs.proto import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterNodeRequest(_message.Message):
    __slots__ = ("node_id", "type", "address", "targets", "hostname", "pid", "incarnation", "bulk_address", "metrics_address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    BULK_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    type: _types_pb2.NodeType
    address: str
    targets: _containers.RepeatedCompositeFieldContainer[_types_pb2.TargetInfo]
    hostname: str
    pid: int
    incarnation: int
    bulk_address: str
    metrics_address: str
    def __init__(self, node_id: _Optional[int] = ..., type: _Optional[_Union[_types_pb2.NodeType, str]] = ..., address: _Optional[str] = ..., targets: _Optional[_Iterable[_Union[_types_pb2.TargetInfo, _Mapping]]] = ..., hostname: _Optional[str] = ..., pid: _Optional[int] = ..., incarnation: _Optional[int] = ..., bulk_address: _Optional[str] = ..., metrics_address: _Optional[str] = ...) -> None: ...

class RegisterNodeReply(_message.Message):
    __slots__ = ("routing", "heartbeat_timeout_ms", "node_key_hashes", "admin_token_hashes", "capability_keys")
    class NodeKeyHashesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: bytes
        def __init__(self, key: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...
    class AdminTokenHashesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: bytes
        def __init__(self, key: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...
    class CapabilityKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: bytes
        def __init__(self, key: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    NODE_KEY_HASHES_FIELD_NUMBER: _ClassVar[int]
    ADMIN_TOKEN_HASHES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_KEYS_FIELD_NUMBER: _ClassVar[int]
    routing: _types_pb2.RoutingInfo
    heartbeat_timeout_ms: int
    node_key_hashes: _containers.ScalarMap[int, bytes]
    admin_token_hashes: _containers.ScalarMap[int, bytes]
    capability_keys: _containers.ScalarMap[int, bytes]
    def __init__(self, routing: _Optional[_Union[_types_pb2.RoutingInfo, _Mapping]] = ..., heartbeat_timeout_ms: _Optional[int] = ..., node_key_hashes: _Optional[_Mapping[int, bytes]] = ..., admin_token_hashes: _Optional[_Mapping[int, bytes]] = ..., capability_keys: _Optional[_Mapping[int, bytes]] = ...) -> None: ...

class TargetHeartbeat(_message.Message):
    __slots__ = ("target_id", "local_state", "used_bytes", "capacity_bytes", "chunk_count", "fs_free_bytes", "fs_id", "capacity_configured")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_STATE_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    FS_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FS_ID_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    local_state: _types_pb2.LocalTargetState
    used_bytes: int
    capacity_bytes: int
    chunk_count: int
    fs_free_bytes: int
    fs_id: str
    capacity_configured: bool
    def __init__(self, target_id: _Optional[int] = ..., local_state: _Optional[_Union[_types_pb2.LocalTargetState, str]] = ..., used_bytes: _Optional[int] = ..., capacity_bytes: _Optional[int] = ..., chunk_count: _Optional[int] = ..., fs_free_bytes: _Optional[int] = ..., fs_id: _Optional[str] = ..., capacity_configured: _Optional[bool] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node_id", "targets", "incarnation")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    targets: _containers.RepeatedCompositeFieldContainer[TargetHeartbeat]
    incarnation: int
    def __init__(self, node_id: _Optional[int] = ..., targets: _Optional[_Iterable[_Union[TargetHeartbeat, _Mapping]]] = ..., incarnation: _Optional[int] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("routing_version", "heartbeat_timeout_ms", "node_key_hashes", "admin_token_hashes", "capability_keys")
    class NodeKeyHashesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: bytes
        def __init__(self, key: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...
    class AdminTokenHashesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: bytes
        def __init__(self, key: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...
    class CapabilityKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: bytes
        def __init__(self, key: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...
    ROUTING_VERSION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    NODE_KEY_HASHES_FIELD_NUMBER: _ClassVar[int]
    ADMIN_TOKEN_HASHES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_KEYS_FIELD_NUMBER: _ClassVar[int]
    routing_version: int
    heartbeat_timeout_ms: int
    node_key_hashes: _containers.ScalarMap[int, bytes]
    admin_token_hashes: _containers.ScalarMap[int, bytes]
    capability_keys: _containers.ScalarMap[int, bytes]
    def __init__(self, routing_version: _Optional[int] = ..., heartbeat_timeout_ms: _Optional[int] = ..., node_key_hashes: _Optional[_Mapping[int, bytes]] = ..., admin_token_hashes: _Optional[_Mapping[int, bytes]] = ..., capability_keys: _Optional[_Mapping[int, bytes]] = ...) -> None: ...

class GetRoutingInfoRequest(_message.Message):
    __slots__ = ("known_version",)
    KNOWN_VERSION_FIELD_NUMBER: _ClassVar[int]
    known_version: int
    def __init__(self, known_version: _Optional[int] = ...) -> None: ...

class GetRoutingInfoReply(_message.Message):
    __slots__ = ("changed", "routing", "admin_offline_targets", "metrics_address")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    ADMIN_OFFLINE_TARGETS_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    routing: _types_pb2.RoutingInfo
    admin_offline_targets: _containers.RepeatedScalarFieldContainer[int]
    metrics_address: str
    def __init__(self, changed: _Optional[bool] = ..., routing: _Optional[_Union[_types_pb2.RoutingInfo, _Mapping]] = ..., admin_offline_targets: _Optional[_Iterable[int]] = ..., metrics_address: _Optional[str] = ...) -> None: ...

class CreateChainTableRequest(_message.Message):
    __slots__ = ("table_id", "replicas", "only_if_missing")
    TABLE_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ONLY_IF_MISSING_FIELD_NUMBER: _ClassVar[int]
    table_id: int
    replicas: int
    only_if_missing: bool
    def __init__(self, table_id: _Optional[int] = ..., replicas: _Optional[int] = ..., only_if_missing: _Optional[bool] = ...) -> None: ...

class CreateChainTableReply(_message.Message):
    __slots__ = ("table", "created")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    table: _types_pb2.ChainTable
    created: bool
    def __init__(self, table: _Optional[_Union[_types_pb2.ChainTable, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class SetTargetStateRequest(_message.Message):
    __slots__ = ("target_id", "offline")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    offline: bool
    def __init__(self, target_id: _Optional[int] = ..., offline: _Optional[bool] = ...) -> None: ...

class SetTargetStateReply(_message.Message):
    __slots__ = ("chain", "target", "routing_version")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ROUTING_VERSION_FIELD_NUMBER: _ClassVar[int]
    chain: _types_pb2.ChainInfo
    target: _types_pb2.TargetInfo
    routing_version: int
    def __init__(self, chain: _Optional[_Union[_types_pb2.ChainInfo, _Mapping]] = ..., target: _Optional[_Union[_types_pb2.TargetInfo, _Mapping]] = ..., routing_version: _Optional[int] = ...) -> None: ...

class RebalanceRequest(_message.Message):
    __slots__ = ("dry_run", "moves_in_flight", "cancel")
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    MOVES_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    moves_in_flight: int
    cancel: bool
    def __init__(self, dry_run: _Optional[bool] = ..., moves_in_flight: _Optional[int] = ..., cancel: _Optional[bool] = ...) -> None: ...

class DrainNodeRequest(_message.Message):
    __slots__ = ("node_id", "dry_run", "moves_in_flight")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    MOVES_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    dry_run: bool
    moves_in_flight: int
    def __init__(self, node_id: _Optional[int] = ..., dry_run: _Optional[bool] = ..., moves_in_flight: _Optional[int] = ...) -> None: ...

class MovesReply(_message.Message):
    __slots__ = ("planned", "pending", "draining")
    PLANNED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    planned: _containers.RepeatedCompositeFieldContainer[_types_pb2.ChainMove]
    pending: _containers.RepeatedCompositeFieldContainer[_types_pb2.ChainMove]
    draining: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, planned: _Optional[_Iterable[_Union[_types_pb2.ChainMove, _Mapping]]] = ..., pending: _Optional[_Iterable[_Union[_types_pb2.ChainMove, _Mapping]]] = ..., draining: _Optional[_Iterable[int]] = ...) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    def __init__(self, node_id: _Optional[int] = ...) -> None: ...

class RemoveNodeReply(_message.Message):
    __slots__ = ("targets",)
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, targets: _Optional[_Iterable[int]] = ...) -> None: ...

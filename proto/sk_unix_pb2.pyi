# mypy: disable-error-code="type-arg,misc,valid-type"
from proto import opts_pb2 as _opts_pb2
from proto import fown_pb2 as _fown_pb2
from proto import sk_opts_pb2 as _sk_opts_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class file_perms_entry(_message.Message):
    __slots__ = ("mode", "uid", "gid")
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    mode: int
    uid: int
    gid: int
    def __init__(self, mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ...) -> None: ...

class unix_sk_entry(_message.Message):
    __slots__ = ("id", "ino", "type", "state", "flags", "uflags", "backlog", "peer", "fown", "opts", "name", "shutdown", "file_perms", "name_dir", "deleted", "ns_id", "mnt_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    UFLAGS_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    OPTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    FILE_PERMS_FIELD_NUMBER: _ClassVar[int]
    NAME_DIR_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    NS_ID_FIELD_NUMBER: _ClassVar[int]
    MNT_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    ino: int
    type: int
    state: int
    flags: int
    uflags: int
    backlog: int
    peer: int
    fown: _fown_pb2.fown_entry
    opts: _sk_opts_pb2.sk_opts_entry
    name: bytes
    shutdown: _sk_opts_pb2.sk_shutdown
    file_perms: file_perms_entry
    name_dir: str
    deleted: bool
    ns_id: int
    mnt_id: int
    def __init__(self, id: _Optional[int] = ..., ino: _Optional[int] = ..., type: _Optional[int] = ..., state: _Optional[int] = ..., flags: _Optional[int] = ..., uflags: _Optional[int] = ..., backlog: _Optional[int] = ..., peer: _Optional[int] = ..., fown: _Optional[_Union[_fown_pb2.fown_entry, _Mapping]] = ..., opts: _Optional[_Union[_sk_opts_pb2.sk_opts_entry, _Mapping]] = ..., name: _Optional[bytes] = ..., shutdown: _Optional[_Union[_sk_opts_pb2.sk_shutdown, str]] = ..., file_perms: _Optional[_Union[file_perms_entry, _Mapping]] = ..., name_dir: _Optional[str] = ..., deleted: _Optional[bool] = ..., ns_id: _Optional[int] = ..., mnt_id: _Optional[int] = ...) -> None: ...

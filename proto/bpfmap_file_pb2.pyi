# mypy: disable-error-code="type-arg,misc,valid-type"
from proto import opts_pb2 as _opts_pb2
from proto import fown_pb2 as _fown_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class bpfmap_file_entry(_message.Message):
    __slots__ = ("id", "flags", "pos", "fown", "map_type", "key_size", "value_size", "map_id", "max_entries", "map_flags", "memlock", "frozen", "map_name", "ifindex", "mnt_id", "map_extra")
    ID_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    POS_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    MAP_TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_SIZE_FIELD_NUMBER: _ClassVar[int]
    VALUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAP_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MAP_FLAGS_FIELD_NUMBER: _ClassVar[int]
    MEMLOCK_FIELD_NUMBER: _ClassVar[int]
    FROZEN_FIELD_NUMBER: _ClassVar[int]
    MAP_NAME_FIELD_NUMBER: _ClassVar[int]
    IFINDEX_FIELD_NUMBER: _ClassVar[int]
    MNT_ID_FIELD_NUMBER: _ClassVar[int]
    MAP_EXTRA_FIELD_NUMBER: _ClassVar[int]
    id: int
    flags: int
    pos: int
    fown: _fown_pb2.fown_entry
    map_type: int
    key_size: int
    value_size: int
    map_id: int
    max_entries: int
    map_flags: int
    memlock: int
    frozen: bool
    map_name: str
    ifindex: int
    mnt_id: int
    map_extra: int
    def __init__(self, id: _Optional[int] = ..., flags: _Optional[int] = ..., pos: _Optional[int] = ..., fown: _Optional[_Union[_fown_pb2.fown_entry, _Mapping]] = ..., map_type: _Optional[int] = ..., key_size: _Optional[int] = ..., value_size: _Optional[int] = ..., map_id: _Optional[int] = ..., max_entries: _Optional[int] = ..., map_flags: _Optional[int] = ..., memlock: _Optional[int] = ..., frozen: _Optional[bool] = ..., map_name: _Optional[str] = ..., ifindex: _Optional[int] = ..., mnt_id: _Optional[int] = ..., map_extra: _Optional[int] = ...) -> None: ...

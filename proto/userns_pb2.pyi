# mypy: disable-error-code="type-arg,misc,valid-type"
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class uid_gid_extent(_message.Message):
    __slots__ = ("first", "lower_first", "count")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIRST_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    first: int
    lower_first: int
    count: int
    def __init__(self, first: _Optional[int] = ..., lower_first: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class userns_entry(_message.Message):
    __slots__ = ("uid_map", "gid_map")
    UID_MAP_FIELD_NUMBER: _ClassVar[int]
    GID_MAP_FIELD_NUMBER: _ClassVar[int]
    uid_map: _containers.RepeatedCompositeFieldContainer[uid_gid_extent]
    gid_map: _containers.RepeatedCompositeFieldContainer[uid_gid_extent]
    def __init__(self, uid_map: _Optional[_Iterable[_Union[uid_gid_extent, _Mapping]]] = ..., gid_map: _Optional[_Iterable[_Union[uid_gid_extent, _Mapping]]] = ...) -> None: ...

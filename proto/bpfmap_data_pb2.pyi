# mypy: disable-error-code="type-arg,misc,valid-type"
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class bpfmap_data_entry(_message.Message):
    __slots__ = ("map_id", "keys_bytes", "values_bytes", "count")
    MAP_ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_BYTES_FIELD_NUMBER: _ClassVar[int]
    VALUES_BYTES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    map_id: int
    keys_bytes: int
    values_bytes: int
    count: int
    def __init__(self, map_id: _Optional[int] = ..., keys_bytes: _Optional[int] = ..., values_bytes: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

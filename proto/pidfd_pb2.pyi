# mypy: disable-error-code="type-arg,misc,valid-type"
from proto import fown_pb2 as _fown_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class pidfd_entry(_message.Message):
    __slots__ = ("id", "ino", "flags", "nspid", "fown")
    ID_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    NSPID_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    id: int
    ino: int
    flags: int
    nspid: int
    fown: _fown_pb2.fown_entry
    def __init__(self, id: _Optional[int] = ..., ino: _Optional[int] = ..., flags: _Optional[int] = ..., nspid: _Optional[int] = ..., fown: _Optional[_Union[_fown_pb2.fown_entry, _Mapping]] = ...) -> None: ...

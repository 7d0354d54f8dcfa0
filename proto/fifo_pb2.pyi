# mypy: disable-error-code="type-arg,misc,valid-type"
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class fifo_entry(_message.Message):
    __slots__ = ("id", "pipe_id", "regf_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    PIPE_ID_FIELD_NUMBER: _ClassVar[int]
    REGF_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    pipe_id: int
    regf_id: int
    def __init__(self, id: _Optional[int] = ..., pipe_id: _Optional[int] = ..., regf_id: _Optional[int] = ...) -> None: ...

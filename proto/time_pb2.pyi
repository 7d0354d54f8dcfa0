# mypy: disable-error-code="type-arg,misc,valid-type"
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class timeval(_message.Message):
    __slots__ = ("tv_sec", "tv_usec")
    TV_SEC_FIELD_NUMBER: _ClassVar[int]
    TV_USEC_FIELD_NUMBER: _ClassVar[int]
    tv_sec: int
    tv_usec: int
    def __init__(self, tv_sec: _Optional[int] = ..., tv_usec: _Optional[int] = ...) -> None: ...

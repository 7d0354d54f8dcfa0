# mypy: disable-error-code="type-arg,misc,valid-type"
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class macvlan_link_entry(_message.Message):
    __slots__ = ("mode", "flags")
    MODE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    mode: int
    flags: int
    def __init__(self, mode: _Optional[int] = ..., flags: _Optional[int] = ...) -> None: ...

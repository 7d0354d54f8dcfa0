# mypy: disable-error-code="type-arg,misc,valid-type"
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class autofs_entry(_message.Message):
    __slots__ = ("fd", "pgrp", "timeout", "minproto", "maxproto", "mode", "uid", "gid", "read_fd")
    FD_FIELD_NUMBER: _ClassVar[int]
    PGRP_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MINPROTO_FIELD_NUMBER: _ClassVar[int]
    MAXPROTO_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    READ_FD_FIELD_NUMBER: _ClassVar[int]
    fd: int
    pgrp: int
    timeout: int
    minproto: int
    maxproto: int
    mode: int
    uid: int
    gid: int
    read_fd: int
    def __init__(self, fd: _Optional[int] = ..., pgrp: _Optional[int] = ..., timeout: _Optional[int] = ..., minproto: _Optional[int] = ..., maxproto: _Optional[int] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., read_fd: _Optional[int] = ...) -> None: ...

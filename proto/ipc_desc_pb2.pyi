# mypy: disable-error-code="type-arg,misc,valid-type"
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ipc_desc_entry(_message.Message):
    __slots__ = ("key", "uid", "gid", "cuid", "cgid", "mode", "id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    CUID_FIELD_NUMBER: _ClassVar[int]
    CGID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    key: int
    uid: int
    gid: int
    cuid: int
    cgid: int
    mode: int
    id: int
    def __init__(self, key: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., cuid: _Optional[int] = ..., cgid: _Optional[int] = ..., mode: _Optional[int] = ..., id: _Optional[int] = ...) -> None: ...

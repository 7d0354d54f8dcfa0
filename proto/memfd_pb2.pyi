# mypy: disable-error-code="type-arg,misc,valid-type"
from proto import opts_pb2 as _opts_pb2
from proto import fown_pb2 as _fown_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class memfd_file_entry(_message.Message):
    __slots__ = ("id", "flags", "pos", "fown", "inode_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    POS_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    flags: int
    pos: int
    fown: _fown_pb2.fown_entry
    inode_id: int
    def __init__(self, id: _Optional[int] = ..., flags: _Optional[int] = ..., pos: _Optional[int] = ..., fown: _Optional[_Union[_fown_pb2.fown_entry, _Mapping]] = ..., inode_id: _Optional[int] = ...) -> None: ...

class memfd_inode_entry(_message.Message):
    __slots__ = ("name", "uid", "gid", "size", "shmid", "seals", "inode_id", "hugetlb_flag", "mode")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHMID_FIELD_NUMBER: _ClassVar[int]
    SEALS_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    HUGETLB_FLAG_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    uid: int
    gid: int
    size: int
    shmid: int
    seals: int
    inode_id: int
    hugetlb_flag: int
    mode: int
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., size: _Optional[int] = ..., shmid: _Optional[int] = ..., seals: _Optional[int] = ..., inode_id: _Optional[int] = ..., hugetlb_flag: _Optional[int] = ..., mode: _Optional[int] = ...) -> None: ...

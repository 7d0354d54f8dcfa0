# mypy: disable-error-code="type-arg,misc,valid-type"
from proto import ipc_desc_pb2 as _ipc_desc_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ipc_sem_entry(_message.Message):
    __slots__ = ("desc", "nsems")
    DESC_FIELD_NUMBER: _ClassVar[int]
    NSEMS_FIELD_NUMBER: _ClassVar[int]
    desc: _ipc_desc_pb2.ipc_desc_entry
    nsems: int
    def __init__(self, desc: _Optional[_Union[_ipc_desc_pb2.ipc_desc_entry, _Mapping]] = ..., nsems: _Optional[int] = ...) -> None: ...

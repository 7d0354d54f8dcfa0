# mypy: disable-error-code="type-arg,misc,valid-type"
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class scm_entry(_message.Message):
    __slots__ = ("type", "rights")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RIGHTS_FIELD_NUMBER: _ClassVar[int]
    type: int
    rights: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, type: _Optional[int] = ..., rights: _Optional[_Iterable[int]] = ...) -> None: ...

class sk_packet_entry(_message.Message):
    __slots__ = ("id_for", "length", "scm")
    ID_FOR_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    SCM_FIELD_NUMBER: _ClassVar[int]
    id_for: int
    length: int
    scm: _containers.RepeatedCompositeFieldContainer[scm_entry]
    def __init__(self, id_for: _Optional[int] = ..., length: _Optional[int] = ..., scm: _Optional[_Iterable[_Union[scm_entry, _Mapping]]] = ...) -> None: ...

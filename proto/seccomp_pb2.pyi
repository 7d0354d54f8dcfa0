# mypy: disable-error-code="type-arg,misc,valid-type"
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class seccomp_filter(_message.Message):
    __slots__ = ("filter", "prev", "flags")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PREV_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    filter: bytes
    prev: int
    flags: int
    def __init__(self, filter: _Optional[bytes] = ..., prev: _Optional[int] = ..., flags: _Optional[int] = ...) -> None: ...

class seccomp_entry(_message.Message):
    __slots__ = ("seccomp_filters",)
    SECCOMP_FILTERS_FIELD_NUMBER: _ClassVar[int]
    seccomp_filters: _containers.RepeatedCompositeFieldContainer[seccomp_filter]
    def __init__(self, seccomp_filters: _Optional[_Iterable[_Union[seccomp_filter, _Mapping]]] = ...) -> None: ...

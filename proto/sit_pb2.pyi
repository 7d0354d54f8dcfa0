# mypy: disable-error-code="type-arg,misc,valid-type"
from proto import opts_pb2 as _opts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class sit_entry(_message.Message):
    __slots__ = ("link", "local", "remote", "ttl", "tos", "pmtudisc", "proto", "flags", "encap_type", "encap_flags", "encap_sport", "encap_dport", "rd_prefixlen", "rd_prefix", "relay_prefixlen", "relay_prefix")
    LINK_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    REMOTE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    TOS_FIELD_NUMBER: _ClassVar[int]
    PMTUDISC_FIELD_NUMBER: _ClassVar[int]
    PROTO_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    ENCAP_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENCAP_FLAGS_FIELD_NUMBER: _ClassVar[int]
    ENCAP_SPORT_FIELD_NUMBER: _ClassVar[int]
    ENCAP_DPORT_FIELD_NUMBER: _ClassVar[int]
    RD_PREFIXLEN_FIELD_NUMBER: _ClassVar[int]
    RD_PREFIX_FIELD_NUMBER: _ClassVar[int]
    RELAY_PREFIXLEN_FIELD_NUMBER: _ClassVar[int]
    RELAY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    link: int
    local: _containers.RepeatedScalarFieldContainer[int]
    remote: _containers.RepeatedScalarFieldContainer[int]
    ttl: int
    tos: int
    pmtudisc: bool
    proto: int
    flags: int
    encap_type: int
    encap_flags: int
    encap_sport: int
    encap_dport: int
    rd_prefixlen: int
    rd_prefix: _containers.RepeatedScalarFieldContainer[int]
    relay_prefixlen: int
    relay_prefix: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, link: _Optional[int] = ..., local: _Optional[_Iterable[int]] = ..., remote: _Optional[_Iterable[int]] = ..., ttl: _Optional[int] = ..., tos: _Optional[int] = ..., pmtudisc: _Optional[bool] = ..., proto: _Optional[int] = ..., flags: _Optional[int] = ..., encap_type: _Optional[int] = ..., encap_flags: _Optional[int] = ..., encap_sport: _Optional[int] = ..., encap_dport: _Optional[int] = ..., rd_prefixlen: _Optional[int] = ..., rd_prefix: _Optional[_Iterable[int]] = ..., relay_prefixlen: _Optional[int] = ..., relay_prefix: _Optional[_Iterable[int]] = ...) -> None: ...

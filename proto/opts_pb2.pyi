# mypy: disable-error-code="type-arg,misc,valid-type"
from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
CRIU_FIELD_NUMBER: _ClassVar[int]
criu: _descriptor.FieldDescriptor

class CRIU_Opts(_message.Message):
    __slots__ = ("hex", "ipadd", "flags", "dev", "odev", "dict", "conv")
    HEX_FIELD_NUMBER: _ClassVar[int]
    IPADD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    DEV_FIELD_NUMBER: _ClassVar[int]
    ODEV_FIELD_NUMBER: _ClassVar[int]
    DICT_FIELD_NUMBER: _ClassVar[int]
    CONV_FIELD_NUMBER: _ClassVar[int]
    hex: bool
    ipadd: bool
    flags: str
    dev: bool
    odev: bool
    dict: str
    conv: str
    def __init__(self, hex: _Optional[bool] = ..., ipadd: _Optional[bool] = ..., flags: _Optional[str] = ..., dev: _Optional[bool] = ..., odev: _Optional[bool] = ..., dict: _Optional[str] = ..., conv: _Optional[str] = ...) -> None: ...

# mypy: disable-error-code="type-arg,misc,valid-type"
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class cpuinfo_x86_entry(_message.Message):
    __slots__ = ("vendor_id", "cpu_family", "model", "stepping", "capability_ver", "capability", "model_id", "xfeatures_mask", "xsave_size", "xsave_size_max")
    class vendor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[cpuinfo_x86_entry.vendor]
        INTEL: _ClassVar[cpuinfo_x86_entry.vendor]
        AMD: _ClassVar[cpuinfo_x86_entry.vendor]
    UNKNOWN: cpuinfo_x86_entry.vendor
    INTEL: cpuinfo_x86_entry.vendor
    AMD: cpuinfo_x86_entry.vendor
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    CPU_FAMILY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STEPPING_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_VER_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    XFEATURES_MASK_FIELD_NUMBER: _ClassVar[int]
    XSAVE_SIZE_FIELD_NUMBER: _ClassVar[int]
    XSAVE_SIZE_MAX_FIELD_NUMBER: _ClassVar[int]
    vendor_id: cpuinfo_x86_entry.vendor
    cpu_family: int
    model: int
    stepping: int
    capability_ver: int
    capability: _containers.RepeatedScalarFieldContainer[int]
    model_id: str
    xfeatures_mask: int
    xsave_size: int
    xsave_size_max: int
    def __init__(self, vendor_id: _Optional[_Union[cpuinfo_x86_entry.vendor, str]] = ..., cpu_family: _Optional[int] = ..., model: _Optional[int] = ..., stepping: _Optional[int] = ..., capability_ver: _Optional[int] = ..., capability: _Optional[_Iterable[int]] = ..., model_id: _Optional[str] = ..., xfeatures_mask: _Optional[int] = ..., xsave_size: _Optional[int] = ..., xsave_size_max: _Optional[int] = ...) -> None: ...

class cpuinfo_ppc64_entry(_message.Message):
    __slots__ = ("endian", "hwcap")
    class endianness(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        BIGENDIAN: _ClassVar[cpuinfo_ppc64_entry.endianness]
        LITTLEENDIAN: _ClassVar[cpuinfo_ppc64_entry.endianness]
    BIGENDIAN: cpuinfo_ppc64_entry.endianness
    LITTLEENDIAN: cpuinfo_ppc64_entry.endianness
    ENDIAN_FIELD_NUMBER: _ClassVar[int]
    HWCAP_FIELD_NUMBER: _ClassVar[int]
    endian: cpuinfo_ppc64_entry.endianness
    hwcap: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, endian: _Optional[_Union[cpuinfo_ppc64_entry.endianness, str]] = ..., hwcap: _Optional[_Iterable[int]] = ...) -> None: ...

class cpuinfo_s390_entry(_message.Message):
    __slots__ = ("hwcap",)
    HWCAP_FIELD_NUMBER: _ClassVar[int]
    hwcap: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, hwcap: _Optional[_Iterable[int]] = ...) -> None: ...

class cpuinfo_entry(_message.Message):
    __slots__ = ("x86_entry", "ppc64_entry", "s390_entry")
    X86_ENTRY_FIELD_NUMBER: _ClassVar[int]
    PPC64_ENTRY_FIELD_NUMBER: _ClassVar[int]
    S390_ENTRY_FIELD_NUMBER: _ClassVar[int]
    x86_entry: _containers.RepeatedCompositeFieldContainer[cpuinfo_x86_entry]
    ppc64_entry: _containers.RepeatedCompositeFieldContainer[cpuinfo_ppc64_entry]
    s390_entry: _containers.RepeatedCompositeFieldContainer[cpuinfo_s390_entry]
    def __init__(self, x86_entry: _Optional[_Iterable[_Union[cpuinfo_x86_entry, _Mapping]]] = ..., ppc64_entry: _Optional[_Iterable[_Union[cpuinfo_ppc64_entry, _Mapping]]] = ..., s390_entry: _Optional[_Iterable[_Union[cpuinfo_s390_entry, _Mapping]]] = ...) -> None: ...

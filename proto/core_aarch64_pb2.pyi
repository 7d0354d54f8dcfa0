# mypy: disable-error-code="type-arg,misc,valid-type"
from proto import opts_pb2 as _opts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class user_aarch64_regs_entry(_message.Message):
    __slots__ = ("regs", "sp", "pc", "pstate")
    REGS_FIELD_NUMBER: _ClassVar[int]
    SP_FIELD_NUMBER: _ClassVar[int]
    PC_FIELD_NUMBER: _ClassVar[int]
    PSTATE_FIELD_NUMBER: _ClassVar[int]
    regs: _containers.RepeatedScalarFieldContainer[int]
    sp: int
    pc: int
    pstate: int
    def __init__(self, regs: _Optional[_Iterable[int]] = ..., sp: _Optional[int] = ..., pc: _Optional[int] = ..., pstate: _Optional[int] = ...) -> None: ...

class user_aarch64_fpsimd_context_entry(_message.Message):
    __slots__ = ("vregs", "fpsr", "fpcr")
    VREGS_FIELD_NUMBER: _ClassVar[int]
    FPSR_FIELD_NUMBER: _ClassVar[int]
    FPCR_FIELD_NUMBER: _ClassVar[int]
    vregs: _containers.RepeatedScalarFieldContainer[int]
    fpsr: int
    fpcr: int
    def __init__(self, vregs: _Optional[_Iterable[int]] = ..., fpsr: _Optional[int] = ..., fpcr: _Optional[int] = ...) -> None: ...

class pac_address_keys(_message.Message):
    __slots__ = ("apiakey_lo", "apiakey_hi", "apibkey_lo", "apibkey_hi", "apdakey_lo", "apdakey_hi", "apdbkey_lo", "apdbkey_hi", "pac_enabled_key")
    APIAKEY_LO_FIELD_NUMBER: _ClassVar[int]
    APIAKEY_HI_FIELD_NUMBER: _ClassVar[int]
    APIBKEY_LO_FIELD_NUMBER: _ClassVar[int]
    APIBKEY_HI_FIELD_NUMBER: _ClassVar[int]
    APDAKEY_LO_FIELD_NUMBER: _ClassVar[int]
    APDAKEY_HI_FIELD_NUMBER: _ClassVar[int]
    APDBKEY_LO_FIELD_NUMBER: _ClassVar[int]
    APDBKEY_HI_FIELD_NUMBER: _ClassVar[int]
    PAC_ENABLED_KEY_FIELD_NUMBER: _ClassVar[int]
    apiakey_lo: int
    apiakey_hi: int
    apibkey_lo: int
    apibkey_hi: int
    apdakey_lo: int
    apdakey_hi: int
    apdbkey_lo: int
    apdbkey_hi: int
    pac_enabled_key: int
    def __init__(self, apiakey_lo: _Optional[int] = ..., apiakey_hi: _Optional[int] = ..., apibkey_lo: _Optional[int] = ..., apibkey_hi: _Optional[int] = ..., apdakey_lo: _Optional[int] = ..., apdakey_hi: _Optional[int] = ..., apdbkey_lo: _Optional[int] = ..., apdbkey_hi: _Optional[int] = ..., pac_enabled_key: _Optional[int] = ...) -> None: ...

class pac_generic_keys(_message.Message):
    __slots__ = ("apgakey_lo", "apgakey_hi")
    APGAKEY_LO_FIELD_NUMBER: _ClassVar[int]
    APGAKEY_HI_FIELD_NUMBER: _ClassVar[int]
    apgakey_lo: int
    apgakey_hi: int
    def __init__(self, apgakey_lo: _Optional[int] = ..., apgakey_hi: _Optional[int] = ...) -> None: ...

class pac_keys(_message.Message):
    __slots__ = ("pac_address_keys", "pac_generic_keys")
    PAC_ADDRESS_KEYS_FIELD_NUMBER: _ClassVar[int]
    PAC_GENERIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    pac_address_keys: pac_address_keys
    pac_generic_keys: pac_generic_keys
    def __init__(self, pac_address_keys: _Optional[_Union[pac_address_keys, _Mapping]] = ..., pac_generic_keys: _Optional[_Union[pac_generic_keys, _Mapping]] = ...) -> None: ...

class thread_info_aarch64(_message.Message):
    __slots__ = ("clear_tid_addr", "tls", "gpregs", "fpsimd", "pac_keys")
    CLEAR_TID_ADDR_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    GPREGS_FIELD_NUMBER: _ClassVar[int]
    FPSIMD_FIELD_NUMBER: _ClassVar[int]
    PAC_KEYS_FIELD_NUMBER: _ClassVar[int]
    clear_tid_addr: int
    tls: int
    gpregs: user_aarch64_regs_entry
    fpsimd: user_aarch64_fpsimd_context_entry
    pac_keys: pac_keys
    def __init__(self, clear_tid_addr: _Optional[int] = ..., tls: _Optional[int] = ..., gpregs: _Optional[_Union[user_aarch64_regs_entry, _Mapping]] = ..., fpsimd: _Optional[_Union[user_aarch64_fpsimd_context_entry, _Mapping]] = ..., pac_keys: _Optional[_Union[pac_keys, _Mapping]] = ...) -> None: ...

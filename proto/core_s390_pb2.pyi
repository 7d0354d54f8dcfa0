# mypy: disable-error-code="type-arg,misc,valid-type"
from proto import opts_pb2 as _opts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class user_s390_regs_entry(_message.Message):
    __slots__ = ("psw_mask", "psw_addr", "gprs", "acrs", "orig_gpr2", "system_call")
    PSW_MASK_FIELD_NUMBER: _ClassVar[int]
    PSW_ADDR_FIELD_NUMBER: _ClassVar[int]
    GPRS_FIELD_NUMBER: _ClassVar[int]
    ACRS_FIELD_NUMBER: _ClassVar[int]
    ORIG_GPR2_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_CALL_FIELD_NUMBER: _ClassVar[int]
    psw_mask: int
    psw_addr: int
    gprs: _containers.RepeatedScalarFieldContainer[int]
    acrs: _containers.RepeatedScalarFieldContainer[int]
    orig_gpr2: int
    system_call: int
    def __init__(self, psw_mask: _Optional[int] = ..., psw_addr: _Optional[int] = ..., gprs: _Optional[_Iterable[int]] = ..., acrs: _Optional[_Iterable[int]] = ..., orig_gpr2: _Optional[int] = ..., system_call: _Optional[int] = ...) -> None: ...

class user_s390_vxrs_low_entry(_message.Message):
    __slots__ = ("regs",)
    REGS_FIELD_NUMBER: _ClassVar[int]
    regs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, regs: _Optional[_Iterable[int]] = ...) -> None: ...

class user_s390_vxrs_high_entry(_message.Message):
    __slots__ = ("regs",)
    REGS_FIELD_NUMBER: _ClassVar[int]
    regs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, regs: _Optional[_Iterable[int]] = ...) -> None: ...

class user_s390_fpregs_entry(_message.Message):
    __slots__ = ("fpc", "fprs")
    FPC_FIELD_NUMBER: _ClassVar[int]
    FPRS_FIELD_NUMBER: _ClassVar[int]
    fpc: int
    fprs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, fpc: _Optional[int] = ..., fprs: _Optional[_Iterable[int]] = ...) -> None: ...

class user_s390_gs_cb_entry(_message.Message):
    __slots__ = ("regs",)
    REGS_FIELD_NUMBER: _ClassVar[int]
    regs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, regs: _Optional[_Iterable[int]] = ...) -> None: ...

class user_s390_ri_entry(_message.Message):
    __slots__ = ("ri_on", "regs")
    RI_ON_FIELD_NUMBER: _ClassVar[int]
    REGS_FIELD_NUMBER: _ClassVar[int]
    ri_on: int
    regs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ri_on: _Optional[int] = ..., regs: _Optional[_Iterable[int]] = ...) -> None: ...

class thread_info_s390(_message.Message):
    __slots__ = ("clear_tid_addr", "gpregs", "fpregs", "vxrs_low", "vxrs_high", "gs_cb", "gs_bc", "ri_cb")
    CLEAR_TID_ADDR_FIELD_NUMBER: _ClassVar[int]
    GPREGS_FIELD_NUMBER: _ClassVar[int]
    FPREGS_FIELD_NUMBER: _ClassVar[int]
    VXRS_LOW_FIELD_NUMBER: _ClassVar[int]
    VXRS_HIGH_FIELD_NUMBER: _ClassVar[int]
    GS_CB_FIELD_NUMBER: _ClassVar[int]
    GS_BC_FIELD_NUMBER: _ClassVar[int]
    RI_CB_FIELD_NUMBER: _ClassVar[int]
    clear_tid_addr: int
    gpregs: user_s390_regs_entry
    fpregs: user_s390_fpregs_entry
    vxrs_low: user_s390_vxrs_low_entry
    vxrs_high: user_s390_vxrs_high_entry
    gs_cb: user_s390_gs_cb_entry
    gs_bc: user_s390_gs_cb_entry
    ri_cb: user_s390_ri_entry
    def __init__(self, clear_tid_addr: _Optional[int] = ..., gpregs: _Optional[_Union[user_s390_regs_entry, _Mapping]] = ..., fpregs: _Optional[_Union[user_s390_fpregs_entry, _Mapping]] = ..., vxrs_low: _Optional[_Union[user_s390_vxrs_low_entry, _Mapping]] = ..., vxrs_high: _Optional[_Union[user_s390_vxrs_high_entry, _Mapping]] = ..., gs_cb: _Optional[_Union[user_s390_gs_cb_entry, _Mapping]] = ..., gs_bc: _Optional[_Union[user_s390_gs_cb_entry, _Mapping]] = ..., ri_cb: _Optional[_Union[user_s390_ri_entry, _Mapping]] = ...) -> None: ...

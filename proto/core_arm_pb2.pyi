# mypy: disable-error-code="type-arg,misc,valid-type"
from proto import opts_pb2 as _opts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class user_arm_regs_entry(_message.Message):
    __slots__ = ("r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "fp", "ip", "sp", "lr", "pc", "cpsr", "orig_r0")
    R0_FIELD_NUMBER: _ClassVar[int]
    R1_FIELD_NUMBER: _ClassVar[int]
    R2_FIELD_NUMBER: _ClassVar[int]
    R3_FIELD_NUMBER: _ClassVar[int]
    R4_FIELD_NUMBER: _ClassVar[int]
    R5_FIELD_NUMBER: _ClassVar[int]
    R6_FIELD_NUMBER: _ClassVar[int]
    R7_FIELD_NUMBER: _ClassVar[int]
    R8_FIELD_NUMBER: _ClassVar[int]
    R9_FIELD_NUMBER: _ClassVar[int]
    R10_FIELD_NUMBER: _ClassVar[int]
    FP_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    SP_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    PC_FIELD_NUMBER: _ClassVar[int]
    CPSR_FIELD_NUMBER: _ClassVar[int]
    ORIG_R0_FIELD_NUMBER: _ClassVar[int]
    r0: int
    r1: int
    r2: int
    r3: int
    r4: int
    r5: int
    r6: int
    r7: int
    r8: int
    r9: int
    r10: int
    fp: int
    ip: int
    sp: int
    lr: int
    pc: int
    cpsr: int
    orig_r0: int
    def __init__(self, r0: _Optional[int] = ..., r1: _Optional[int] = ..., r2: _Optional[int] = ..., r3: _Optional[int] = ..., r4: _Optional[int] = ..., r5: _Optional[int] = ..., r6: _Optional[int] = ..., r7: _Optional[int] = ..., r8: _Optional[int] = ..., r9: _Optional[int] = ..., r10: _Optional[int] = ..., fp: _Optional[int] = ..., ip: _Optional[int] = ..., sp: _Optional[int] = ..., lr: _Optional[int] = ..., pc: _Optional[int] = ..., cpsr: _Optional[int] = ..., orig_r0: _Optional[int] = ...) -> None: ...

class user_arm_vfpstate_entry(_message.Message):
    __slots__ = ("vfp_regs", "fpscr", "fpexc", "fpinst", "fpinst2")
    VFP_REGS_FIELD_NUMBER: _ClassVar[int]
    FPSCR_FIELD_NUMBER: _ClassVar[int]
    FPEXC_FIELD_NUMBER: _ClassVar[int]
    FPINST_FIELD_NUMBER: _ClassVar[int]
    FPINST2_FIELD_NUMBER: _ClassVar[int]
    vfp_regs: _containers.RepeatedScalarFieldContainer[int]
    fpscr: int
    fpexc: int
    fpinst: int
    fpinst2: int
    def __init__(self, vfp_regs: _Optional[_Iterable[int]] = ..., fpscr: _Optional[int] = ..., fpexc: _Optional[int] = ..., fpinst: _Optional[int] = ..., fpinst2: _Optional[int] = ...) -> None: ...

class thread_info_arm(_message.Message):
    __slots__ = ("clear_tid_addr", "tls", "gpregs", "fpstate")
    CLEAR_TID_ADDR_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    GPREGS_FIELD_NUMBER: _ClassVar[int]
    FPSTATE_FIELD_NUMBER: _ClassVar[int]
    clear_tid_addr: int
    tls: int
    gpregs: user_arm_regs_entry
    fpstate: user_arm_vfpstate_entry
    def __init__(self, clear_tid_addr: _Optional[int] = ..., tls: _Optional[int] = ..., gpregs: _Optional[_Union[user_arm_regs_entry, _Mapping]] = ..., fpstate: _Optional[_Union[user_arm_vfpstate_entry, _Mapping]] = ...) -> None: ...

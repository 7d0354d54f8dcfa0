# mypy: disable-error-code="type-arg,misc,valid-type"
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class creds_entry(_message.Message):
    __slots__ = ("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid", "cap_inh", "cap_prm", "cap_eff", "cap_bnd", "secbits", "groups", "lsm_profile", "lsm_sockcreate", "apparmor_data", "no_new_privs", "cap_amb")
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    EUID_FIELD_NUMBER: _ClassVar[int]
    EGID_FIELD_NUMBER: _ClassVar[int]
    SUID_FIELD_NUMBER: _ClassVar[int]
    SGID_FIELD_NUMBER: _ClassVar[int]
    FSUID_FIELD_NUMBER: _ClassVar[int]
    FSGID_FIELD_NUMBER: _ClassVar[int]
    CAP_INH_FIELD_NUMBER: _ClassVar[int]
    CAP_PRM_FIELD_NUMBER: _ClassVar[int]
    CAP_EFF_FIELD_NUMBER: _ClassVar[int]
    CAP_BND_FIELD_NUMBER: _ClassVar[int]
    SECBITS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    LSM_PROFILE_FIELD_NUMBER: _ClassVar[int]
    LSM_SOCKCREATE_FIELD_NUMBER: _ClassVar[int]
    APPARMOR_DATA_FIELD_NUMBER: _ClassVar[int]
    NO_NEW_PRIVS_FIELD_NUMBER: _ClassVar[int]
    CAP_AMB_FIELD_NUMBER: _ClassVar[int]
    uid: int
    gid: int
    euid: int
    egid: int
    suid: int
    sgid: int
    fsuid: int
    fsgid: int
    cap_inh: _containers.RepeatedScalarFieldContainer[int]
    cap_prm: _containers.RepeatedScalarFieldContainer[int]
    cap_eff: _containers.RepeatedScalarFieldContainer[int]
    cap_bnd: _containers.RepeatedScalarFieldContainer[int]
    secbits: int
    groups: _containers.RepeatedScalarFieldContainer[int]
    lsm_profile: str
    lsm_sockcreate: str
    apparmor_data: bytes
    no_new_privs: int
    cap_amb: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, uid: _Optional[int] = ..., gid: _Optional[int] = ..., euid: _Optional[int] = ..., egid: _Optional[int] = ..., suid: _Optional[int] = ..., sgid: _Optional[int] = ..., fsuid: _Optional[int] = ..., fsgid: _Optional[int] = ..., cap_inh: _Optional[_Iterable[int]] = ..., cap_prm: _Optional[_Iterable[int]] = ..., cap_eff: _Optional[_Iterable[int]] = ..., cap_bnd: _Optional[_Iterable[int]] = ..., secbits: _Optional[int] = ..., groups: _Optional[_Iterable[int]] = ..., lsm_profile: _Optional[str] = ..., lsm_sockcreate: _Optional[str] = ..., apparmor_data: _Optional[bytes] = ..., no_new_privs: _Optional[int] = ..., cap_amb: _Optional[_Iterable[int]] = ...) -> None: ...

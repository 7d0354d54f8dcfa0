# mypy: disable-error-code="type-arg,misc,valid-type"
from proto import regfile_pb2 as _regfile_pb2
from proto import sk_inet_pb2 as _sk_inet_pb2
from proto import ns_pb2 as _ns_pb2
from proto import packet_sock_pb2 as _packet_sock_pb2
from proto import sk_netlink_pb2 as _sk_netlink_pb2
from proto import eventfd_pb2 as _eventfd_pb2
from proto import eventpoll_pb2 as _eventpoll_pb2
from proto import signalfd_pb2 as _signalfd_pb2
from proto import tun_pb2 as _tun_pb2
from proto import timerfd_pb2 as _timerfd_pb2
from proto import fsnotify_pb2 as _fsnotify_pb2
from proto import ext_file_pb2 as _ext_file_pb2
from proto import sk_unix_pb2 as _sk_unix_pb2
from proto import fifo_pb2 as _fifo_pb2
from proto import pipe_pb2 as _pipe_pb2
from proto import pidfd_pb2 as _pidfd_pb2
from proto import tty_pb2 as _tty_pb2
from proto import memfd_pb2 as _memfd_pb2
from proto import bpfmap_file_pb2 as _bpfmap_file_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class fd_types(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UND: _ClassVar[fd_types]
    REG: _ClassVar[fd_types]
    PIPE: _ClassVar[fd_types]
    FIFO: _ClassVar[fd_types]
    INETSK: _ClassVar[fd_types]
    UNIXSK: _ClassVar[fd_types]
    EVENTFD: _ClassVar[fd_types]
    EVENTPOLL: _ClassVar[fd_types]
    INOTIFY: _ClassVar[fd_types]
    SIGNALFD: _ClassVar[fd_types]
    PACKETSK: _ClassVar[fd_types]
    TTY: _ClassVar[fd_types]
    FANOTIFY: _ClassVar[fd_types]
    NETLINKSK: _ClassVar[fd_types]
    NS: _ClassVar[fd_types]
    TUNF: _ClassVar[fd_types]
    EXT: _ClassVar[fd_types]
    TIMERFD: _ClassVar[fd_types]
    MEMFD: _ClassVar[fd_types]
    BPFMAP: _ClassVar[fd_types]
    PIDFD: _ClassVar[fd_types]
    CTL_TTY: _ClassVar[fd_types]
    AUTOFS_PIPE: _ClassVar[fd_types]
UND: fd_types
REG: fd_types
PIPE: fd_types
FIFO: fd_types
INETSK: fd_types
UNIXSK: fd_types
EVENTFD: fd_types
EVENTPOLL: fd_types
INOTIFY: fd_types
SIGNALFD: fd_types
PACKETSK: fd_types
TTY: fd_types
FANOTIFY: fd_types
NETLINKSK: fd_types
NS: fd_types
TUNF: fd_types
EXT: fd_types
TIMERFD: fd_types
MEMFD: fd_types
BPFMAP: fd_types
PIDFD: fd_types
CTL_TTY: fd_types
AUTOFS_PIPE: fd_types

class fdinfo_entry(_message.Message):
    __slots__ = ("id", "flags", "type", "fd", "xattr_security_selinux")
    ID_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FD_FIELD_NUMBER: _ClassVar[int]
    XATTR_SECURITY_SELINUX_FIELD_NUMBER: _ClassVar[int]
    id: int
    flags: int
    type: fd_types
    fd: int
    xattr_security_selinux: str
    def __init__(self, id: _Optional[int] = ..., flags: _Optional[int] = ..., type: _Optional[_Union[fd_types, str]] = ..., fd: _Optional[int] = ..., xattr_security_selinux: _Optional[str] = ...) -> None: ...

class file_entry(_message.Message):
    __slots__ = ("type", "id", "reg", "isk", "nsf", "psk", "nlsk", "efd", "epfd", "sgfd", "tunf", "tfd", "ify", "ffy", "ext", "usk", "fifo", "pipe", "tty", "memfd", "bpf", "pidfd")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REG_FIELD_NUMBER: _ClassVar[int]
    ISK_FIELD_NUMBER: _ClassVar[int]
    NSF_FIELD_NUMBER: _ClassVar[int]
    PSK_FIELD_NUMBER: _ClassVar[int]
    NLSK_FIELD_NUMBER: _ClassVar[int]
    EFD_FIELD_NUMBER: _ClassVar[int]
    EPFD_FIELD_NUMBER: _ClassVar[int]
    SGFD_FIELD_NUMBER: _ClassVar[int]
    TUNF_FIELD_NUMBER: _ClassVar[int]
    TFD_FIELD_NUMBER: _ClassVar[int]
    IFY_FIELD_NUMBER: _ClassVar[int]
    FFY_FIELD_NUMBER: _ClassVar[int]
    EXT_FIELD_NUMBER: _ClassVar[int]
    USK_FIELD_NUMBER: _ClassVar[int]
    FIFO_FIELD_NUMBER: _ClassVar[int]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    MEMFD_FIELD_NUMBER: _ClassVar[int]
    BPF_FIELD_NUMBER: _ClassVar[int]
    PIDFD_FIELD_NUMBER: _ClassVar[int]
    type: fd_types
    id: int
    reg: _regfile_pb2.reg_file_entry
    isk: _sk_inet_pb2.inet_sk_entry
    nsf: _ns_pb2.ns_file_entry
    psk: _packet_sock_pb2.packet_sock_entry
    nlsk: _sk_netlink_pb2.netlink_sk_entry
    efd: _eventfd_pb2.eventfd_file_entry
    epfd: _eventpoll_pb2.eventpoll_file_entry
    sgfd: _signalfd_pb2.signalfd_entry
    tunf: _tun_pb2.tunfile_entry
    tfd: _timerfd_pb2.timerfd_entry
    ify: _fsnotify_pb2.inotify_file_entry
    ffy: _fsnotify_pb2.fanotify_file_entry
    ext: _ext_file_pb2.ext_file_entry
    usk: _sk_unix_pb2.unix_sk_entry
    fifo: _fifo_pb2.fifo_entry
    pipe: _pipe_pb2.pipe_entry
    tty: _tty_pb2.tty_file_entry
    memfd: _memfd_pb2.memfd_file_entry
    bpf: _bpfmap_file_pb2.bpfmap_file_entry
    pidfd: _pidfd_pb2.pidfd_entry
    def __init__(self, type: _Optional[_Union[fd_types, str]] = ..., id: _Optional[int] = ..., reg: _Optional[_Union[_regfile_pb2.reg_file_entry, _Mapping]] = ..., isk: _Optional[_Union[_sk_inet_pb2.inet_sk_entry, _Mapping]] = ..., nsf: _Optional[_Union[_ns_pb2.ns_file_entry, _Mapping]] = ..., psk: _Optional[_Union[_packet_sock_pb2.packet_sock_entry, _Mapping]] = ..., nlsk: _Optional[_Union[_sk_netlink_pb2.netlink_sk_entry, _Mapping]] = ..., efd: _Optional[_Union[_eventfd_pb2.eventfd_file_entry, _Mapping]] = ..., epfd: _Optional[_Union[_eventpoll_pb2.eventpoll_file_entry, _Mapping]] = ..., sgfd: _Optional[_Union[_signalfd_pb2.signalfd_entry, _Mapping]] = ..., tunf: _Optional[_Union[_tun_pb2.tunfile_entry, _Mapping]] = ..., tfd: _Optional[_Union[_timerfd_pb2.timerfd_entry, _Mapping]] = ..., ify: _Optional[_Union[_fsnotify_pb2.inotify_file_entry, _Mapping]] = ..., ffy: _Optional[_Union[_fsnotify_pb2.fanotify_file_entry, _Mapping]] = ..., ext: _Optional[_Union[_ext_file_pb2.ext_file_entry, _Mapping]] = ..., usk: _Optional[_Union[_sk_unix_pb2.unix_sk_entry, _Mapping]] = ..., fifo: _Optional[_Union[_fifo_pb2.fifo_entry, _Mapping]] = ..., pipe: _Optional[_Union[_pipe_pb2.pipe_entry, _Mapping]] = ..., tty: _Optional[_Union[_tty_pb2.tty_file_entry, _Mapping]] = ..., memfd: _Optional[_Union[_memfd_pb2.memfd_file_entry, _Mapping]] = ..., bpf: _Optional[_Union[_bpfmap_file_pb2.bpfmap_file_entry, _Mapping]] = ..., pidfd: _Optional[_Union[_pidfd_pb2.pidfd_entry, _Mapping]] = ...) -> None: ...

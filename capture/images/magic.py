"""The one table of image kinds: magic numbers, heads, layouts, messages, file names.

Every other part of hetmig asks this module what an image file is; nothing
else spells a magic number. The values are those of CRIU 4.1 (criu/include/
magic.h and pycriu's magic table); the file-name patterns are those of CRIU's
criu/image-desc.c. This module only describes; it reads and writes nothing.

It refuses to guess: an unknown magic or an unknown file name is a lookup
failure (``None``/``KeyError``), and callers turn that into an ImageError.
"""

from __future__ import annotations

import enum
import importlib
import re
from dataclasses import dataclass
from typing import Final

from google.protobuf.message import Message

#: First u32 of every image except inventory.img and the raw ones.
IMG_COMMON_MAGIC: Final = 0x54564319
#: First u32 of the "service" files (stats-*, irmap-cache).
IMG_SERVICE_MAGIC: Final = 0x55105940
#: Raw images (pages-N.img, ip dumps, tarballs) carry no magic at all.
RAW_IMAGE_MAGIC: Final = 0x0
#: inventory.img's img_version for CRIU >= 1.1 image sets.
CRTOOLS_IMAGES_V1_1: Final = 2


class Head(enum.Enum):
    """What precedes the image's own magic."""

    NONE = "none"  # inventory.img: its magic alone
    COMMON = "common"  # IMG_COMMON_MAGIC, then the magic
    SERVICE = "service"  # IMG_SERVICE_MAGIC, then the magic
    RAW = "raw"  # no magic at all (pages, tarballs, ip dumps)


class Layout(enum.Enum):
    """How the body after the magic(s) is laid out."""

    PLAIN = "plain"  # { u32 size, message }
    PAGEMAP = "pagemap"  # first message pagemap_head, the rest pagemap_entry
    PAYLOAD = "payload"  # { u32 size, message, payload bytes (length from the message) }
    GHOST = "ghost"  # ghost_file_entry, then either raw contents or chunk entries + data
    IPC_SHM = "ipc_shm"  # ipc_shm_entry, then size bytes padded to 4 (unless in_pagemaps)
    IPC_SEM = "ipc_sem"  # ipc_sem_entry, then nsems u16 padded to 8
    IPC_MSG = "ipc_msg"  # ipc_msg_entry, then qnum x (u32 size, ipc_msg, msize bytes padded to 8)
    RAW = "raw"  # no entries; the whole file is data


@dataclass(frozen=True, slots=True)
class ImageKind:
    """One kind of image file."""

    name: str  # CRIU's magic name, e.g. "CORE"
    magic: int
    head: Head
    layout: Layout
    module: str | None = None  # proto module under proto/, e.g. "core_pb2"
    message: str | None = None  # message name, e.g. "core_entry"
    payload_fields: tuple[str, ...] = ()  # PAYLOAD: fields whose sum is the payload length

    def message_class(self, message: str | None = None) -> type[Message]:
        """The generated class for this kind's message (or another one of its module)."""
        name = message or self.message
        if self.module is None or name is None:
            raise KeyError(f"{self.name} images have no protobuf entries")
        mod = importlib.import_module(f"proto.{self.module}")
        cls: type[Message] = getattr(mod, name)
        return cls


def _k(
    name: str,
    magic: int,
    module: str,
    message: str,
    *,
    head: Head = Head.COMMON,
    layout: Layout = Layout.PLAIN,
    payload: tuple[str, ...] = (),
) -> ImageKind:
    return ImageKind(name, magic, head, layout, module, message, payload)


# name -> kind. Magic values: CRIU 4.1.
KINDS: Final[dict[str, ImageKind]] = {
    k.name: k
    for k in (
        _k("INVENTORY", 0x58313116, "inventory_pb2", "inventory_entry", head=Head.NONE),
        _k("PSTREE", 0x50273030, "pstree_pb2", "pstree_entry"),
        _k("FDINFO", 0x56213732, "fdinfo_pb2", "fdinfo_entry"),
        _k("PAGEMAP", 0x56084025, "pagemap_pb2", "pagemap_entry", layout=Layout.PAGEMAP),
        _k("CORE", 0x55053847, "core_pb2", "core_entry"),
        _k("IDS", 0x54432030, "core_pb2", "task_kobj_ids_entry"),
        _k("VMAS", 0x54123737, "vma_pb2", "vma_entry"),
        _k("PIPES", 0x56513555, "pipe_pb2", "pipe_entry"),
        _k("PIPES_DATA", 0x56453709, "pipe_data_pb2", "pipe_data_entry",
           layout=Layout.PAYLOAD, payload=("bytes",)),
        _k("FIFO", 0x58364939, "fifo_pb2", "fifo_entry"),
        _k("FIFO_DATA", 0x59333054, "pipe_data_pb2", "pipe_data_entry",
           layout=Layout.PAYLOAD, payload=("bytes",)),
        _k("SIGACT", 0x55344201, "sa_pb2", "sa_entry"),
        _k("UNIXSK", 0x54373943, "sk_unix_pb2", "unix_sk_entry"),
        _k("INETSK", 0x56443851, "sk_inet_pb2", "inet_sk_entry"),
        _k("PACKETSK", 0x60454618, "packet_sock_pb2", "packet_sock_entry"),
        _k("ITIMERS", 0x57464056, "timer_pb2", "itimer_entry"),
        _k("POSIX_TIMERS", 0x52603957, "timer_pb2", "posix_timer_entry"),
        _k("SK_QUEUES", 0x56264026, "sk_packet_pb2", "sk_packet_entry",
           layout=Layout.PAYLOAD, payload=("length",)),
        _k("UTSNS", 0x54473203, "utsns_pb2", "utsns_entry"),
        _k("CREDS", 0x54023547, "creds_pb2", "creds_entry"),
        _k("IPC_VAR", 0x53115007, "ipc_var_pb2", "ipc_var_entry"),
        _k("IPCNS_SHM", 0x46283044, "ipc_shm_pb2", "ipc_shm_entry", layout=Layout.IPC_SHM),
        _k("IPCNS_MSG", 0x55453737, "ipc_msg_pb2", "ipc_msg_entry", layout=Layout.IPC_MSG),
        _k("IPCNS_SEM", 0x59573019, "ipc_sem_pb2", "ipc_sem_entry", layout=Layout.IPC_SEM),
        _k("REG_FILES", 0x50363636, "regfile_pb2", "reg_file_entry"),
        _k("EXT_FILES", 0x59255641, "ext_file_pb2", "ext_file_entry"),
        _k("FS", 0x51403912, "fs_pb2", "fs_entry"),
        _k("MM", 0x57492820, "mm_pb2", "mm_entry"),
        _k("REMAP_FPATH", 0x59133954, "remap_file_path_pb2", "remap_file_path_entry"),
        _k("GHOST_FILE", 0x52583605, "ghost_file_pb2", "ghost_file_entry", layout=Layout.GHOST),
        _k("TCP_STREAM", 0x51465506, "tcp_stream_pb2", "tcp_stream_entry",
           layout=Layout.PAYLOAD, payload=("inq_len", "outq_len")),
        _k("EVENTFD_FILE", 0x44523722, "eventfd_pb2", "eventfd_file_entry"),
        _k("EVENTPOLL_FILE", 0x45023858, "eventpoll_pb2", "eventpoll_file_entry"),
        _k("EVENTPOLL_TFD", 0x44433746, "eventpoll_pb2", "eventpoll_tfd_entry"),
        _k("SIGNALFD", 0x57323820, "signalfd_pb2", "signalfd_entry"),
        _k("INOTIFY_FILE", 0x48424431, "fsnotify_pb2", "inotify_file_entry"),
        _k("INOTIFY_WD", 0x54562009, "fsnotify_pb2", "inotify_wd_entry"),
        _k("MNTS", 0x55563928, "mnt_pb2", "mnt_entry"),
        _k("NETDEV", 0x57373951, "netdev_pb2", "net_device_entry"),
        _k("NETNS", 0x55933752, "netdev_pb2", "netns_entry"),
        _k("TTY_FILES", 0x59433025, "tty_pb2", "tty_file_entry"),
        _k("TTY_INFO", 0x59453036, "tty_pb2", "tty_info_entry"),
        _k("TTY_DATA", 0x59413026, "tty_pb2", "tty_data_entry"),
        _k("FILE_LOCKS", 0x54323616, "file_lock_pb2", "file_lock_entry"),
        _k("RLIMIT", 0x57113925, "rlimit_pb2", "rlimit_entry"),
        _k("FANOTIFY_FILE", 0x55096122, "fsnotify_pb2", "fanotify_file_entry"),
        _k("FANOTIFY_MARK", 0x56506035, "fsnotify_pb2", "fanotify_mark_entry"),
        _k("SIGNAL", 0x59255647, "siginfo_pb2", "siginfo_entry"),
        _k("NETLINK_SK", 0x58005614, "sk_netlink_pb2", "netlink_sk_entry"),
        _k("NS_FILES", 0x61394011, "ns_pb2", "ns_file_entry"),
        _k("TUNFILE", 0x57143751, "tun_pb2", "tunfile_entry"),
        _k("CGROUP", 0x59383330, "cgroup_pb2", "cgroup_entry"),
        _k("TIMERFD", 0x50493712, "timerfd_pb2", "timerfd_entry"),
        _k("CPUINFO", 0x61404013, "cpuinfo_pb2", "cpuinfo_entry"),
        _k("USERNS", 0x55474906, "userns_pb2", "userns_entry"),
        _k("SECCOMP", 0x64413049, "seccomp_pb2", "seccomp_entry"),
        _k("BINFMT_MISC", 0x67343323, "binfmt_misc_pb2", "binfmt_misc_entry"),
        _k("AUTOFS", 0x49353943, "autofs_pb2", "autofs_entry"),
        _k("FILES", 0x56303138, "fdinfo_pb2", "file_entry"),
        _k("MEMFD_INODE", 0x48453499, "memfd_pb2", "memfd_inode_entry"),
        _k("TIMENS", 0x43114433, "timens_pb2", "timens_entry"),
        _k("PIDNS", 0x61157326, "pidns_pb2", "pidns_entry"),
        _k("BPFMAP_FILE", 0x57506142, "bpfmap_file_pb2", "bpfmap_file_entry"),
        _k("BPFMAP_DATA", 0x64324033, "bpfmap_data_pb2", "bpfmap_data_entry",
           layout=Layout.PAYLOAD, payload=("keys_bytes", "values_bytes")),
        _k("APPARMOR", 0x59423047, "apparmor_pb2", "apparmor_entry"),
        _k("STATS", 0x57093306, "stats_pb2", "stats_entry", head=Head.SERVICE),
        _k("IRMAP_CACHE", 0x57004059, "fh_pb2", "irmap_cache_entry", head=Head.SERVICE),
    )
}

#: Raw (magic-less) kinds. They are recognised by file name only.
RAW_KINDS: Final[dict[str, ImageKind]] = {
    n: ImageKind(n, RAW_IMAGE_MAGIC, Head.RAW, Layout.RAW)
    for n in (
        "PAGES", "IFADDR", "ROUTE", "ROUTE6", "RULE", "IPTABLES", "IP6TABLES",
        "NFTABLES", "TMPFS_IMG", "TMPFS_DEV", "NETNF_CT", "NETNF_EXP",
    )
}

BY_MAGIC: Final[dict[int, ImageKind]] = {k.magic: k for k in KINDS.values()}

# Placeholders in the templates below: {N} a decimal number (%u, %lu, %d),
# {X} a hex number (%x), {W} a word (stats-%s).
_PLACEHOLDERS: Final = {"{N}": r"-?[0-9]+", "{X}": r"[0-9a-f]+", "{W}": r"[a-z]+"}

# (file-name pattern, kind name), from CRIU's image-desc.c. First match wins.
_FILE_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    ("inventory.img", "INVENTORY"),
    ("fdinfo-{N}.img", "FDINFO"),
    ("pagemap-shmem-{N}.img", "PAGEMAP"),
    ("pagemap-secretmem-{N}.img", "PAGEMAP"),
    ("pagemap-{N}.img", "PAGEMAP"),
    ("reg-files.img", "REG_FILES"),
    ("ext-files.img", "EXT_FILES"),
    ("ns-files.img", "NS_FILES"),
    ("eventfd.img", "EVENTFD_FILE"),
    ("eventpoll.img", "EVENTPOLL_FILE"),
    ("eventpoll-tfd.img", "EVENTPOLL_TFD"),
    ("signalfd.img", "SIGNALFD"),
    ("inotify.img", "INOTIFY_FILE"),
    ("inotify-wd.img", "INOTIFY_WD"),
    ("fanotify.img", "FANOTIFY_FILE"),
    ("fanotify-mark.img", "FANOTIFY_MARK"),
    ("core-{N}.img", "CORE"),
    ("ids-{N}.img", "IDS"),
    ("mm-{N}.img", "MM"),
    ("vmas-{N}.img", "VMAS"),
    ("pipes.img", "PIPES"),
    ("pipes-data.img", "PIPES_DATA"),
    ("fifo.img", "FIFO"),
    ("fifo-data.img", "FIFO_DATA"),
    ("pstree.img", "PSTREE"),
    ("sigacts-{N}.img", "SIGACT"),
    ("unixsk.img", "UNIXSK"),
    ("inetsk.img", "INETSK"),
    ("packetsk.img", "PACKETSK"),
    ("netlinksk.img", "NETLINK_SK"),
    ("sk-queues.img", "SK_QUEUES"),
    ("itimers-{N}.img", "ITIMERS"),
    ("posix-timers-{N}.img", "POSIX_TIMERS"),
    ("creds-{N}.img", "CREDS"),
    ("utsns-{N}.img", "UTSNS"),
    ("ipcns-var-{N}.img", "IPC_VAR"),
    ("ipcns-shm-{N}.img", "IPCNS_SHM"),
    ("ipcns-msg-{N}.img", "IPCNS_MSG"),
    ("ipcns-sem-{N}.img", "IPCNS_SEM"),
    ("fs-{N}.img", "FS"),
    ("remap-fpath.img", "REMAP_FPATH"),
    ("ghost-file-{X}.img", "GHOST_FILE"),
    ("memfd.img", "MEMFD_INODE"),
    ("tcp-stream-{X}.img", "TCP_STREAM"),
    ("mountpoints-{N}.img", "MNTS"),
    ("netdev-{N}.img", "NETDEV"),
    ("netns-ct-{N}.img", "NETNF_CT"),
    ("netns-exp-{N}.img", "NETNF_EXP"),
    ("netns-{N}.img", "NETNS"),
    ("ifaddr-{N}.img", "IFADDR"),
    ("route6-{N}.img", "ROUTE6"),
    ("route-{N}.img", "ROUTE"),
    ("rule-{N}.img", "RULE"),
    ("iptables-{N}.img", "IPTABLES"),
    ("ip6tables-{N}.img", "IP6TABLES"),
    ("nftables-{N}.img", "NFTABLES"),
    ("tmpfs-dev-{N}.tar.gz.img", "TMPFS_DEV"),
    ("tmpfs-{N}.tar.gz.img", "TMPFS_IMG"),
    ("tmpfs-dev-{N}.tar.gz", "TMPFS_DEV"),
    ("tmpfs-{N}.tar.gz", "TMPFS_IMG"),
    ("autofs-{N}.img", "AUTOFS"),
    ("binfmt-misc-{N}.img", "BINFMT_MISC"),
    ("binfmt-misc.img", "BINFMT_MISC"),
    ("tty.img", "TTY_FILES"),
    ("tty-info.img", "TTY_INFO"),
    ("tty-data.img", "TTY_DATA"),
    ("filelocks.img", "FILE_LOCKS"),
    ("rlimit-{N}.img", "RLIMIT"),
    ("pages-{N}.img", "PAGES"),
    ("signal-s-{N}.img", "SIGNAL"),
    ("signal-p-{N}.img", "SIGNAL"),
    ("tunfile.img", "TUNFILE"),
    ("cgroup.img", "CGROUP"),
    ("timerfd.img", "TIMERFD"),
    ("cpuinfo.img", "CPUINFO"),
    ("seccomp.img", "SECCOMP"),
    ("userns-{N}.img", "USERNS"),
    ("files.img", "FILES"),
    ("timens-{N}.img", "TIMENS"),
    ("pidns-{N}.img", "PIDNS"),
    ("bpfmap-file.img", "BPFMAP_FILE"),
    ("bpfmap-data.img", "BPFMAP_DATA"),
    ("apparmor.img", "APPARMOR"),
    ("stats-{W}", "STATS"),
    ("stats-{W}.img", "STATS"),
    ("irmap-cache", "IRMAP_CACHE"),
    ("irmap-cache.img", "IRMAP_CACHE"),
)



def _template_re(template: str) -> re.Pattern[str]:
    rx = re.escape(template)
    for ph, sub in _PLACEHOLDERS.items():
        rx = rx.replace(re.escape(ph), sub)
    return re.compile(rx)


_FILE_RES: Final = tuple((_template_re(p), n) for p, n in _FILE_PATTERNS)


def image_name_for(filename: str) -> str:
    """The kind name (e.g. ``"CORE"``) of an image file, judged by its base name.

    Raises KeyError for names CRIU never writes (the reader then goes by the
    magic alone).
    """
    base = filename.rsplit("/", 1)[-1]
    for pattern, name in _FILE_RES:
        if pattern.fullmatch(base):
            return name
    raise KeyError(f"{base!r} is not a CRIU image file name")


def kind_named(name: str) -> ImageKind:
    """The kind for a magic name; KeyError if there is none."""
    if name in KINDS:
        return KINDS[name]
    return RAW_KINDS[name]


def preload_modules() -> None:
    """Import the generated module of every kind (some tens of ms the first time).

    Readers and writers import them on first use; a live migration calls this
    before its frozen phase so that no first use falls inside the downtime.
    """
    for kind in KINDS.values():
        if kind.module is not None:
            importlib.import_module(f"proto.{kind.module}")

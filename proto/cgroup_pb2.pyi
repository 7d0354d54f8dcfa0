# mypy: disable-error-code="type-arg,misc,valid-type"
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class cgroup_perms(_message.Message):
    __slots__ = ("mode", "uid", "gid")
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    mode: int
    uid: int
    gid: int
    def __init__(self, mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ...) -> None: ...

class cgroup_prop_entry(_message.Message):
    __slots__ = ("name", "value", "perms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PERMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    perms: cgroup_perms
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ..., perms: _Optional[_Union[cgroup_perms, _Mapping]] = ...) -> None: ...

class cgroup_dir_entry(_message.Message):
    __slots__ = ("dir_name", "children", "properties", "dir_perms")
    DIR_NAME_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    DIR_PERMS_FIELD_NUMBER: _ClassVar[int]
    dir_name: str
    children: _containers.RepeatedCompositeFieldContainer[cgroup_dir_entry]
    properties: _containers.RepeatedCompositeFieldContainer[cgroup_prop_entry]
    dir_perms: cgroup_perms
    def __init__(self, dir_name: _Optional[str] = ..., children: _Optional[_Iterable[_Union[cgroup_dir_entry, _Mapping]]] = ..., properties: _Optional[_Iterable[_Union[cgroup_prop_entry, _Mapping]]] = ..., dir_perms: _Optional[_Union[cgroup_perms, _Mapping]] = ...) -> None: ...

class cg_controller_entry(_message.Message):
    __slots__ = ("cnames", "dirs", "is_threaded")
    CNAMES_FIELD_NUMBER: _ClassVar[int]
    DIRS_FIELD_NUMBER: _ClassVar[int]
    IS_THREADED_FIELD_NUMBER: _ClassVar[int]
    cnames: _containers.RepeatedScalarFieldContainer[str]
    dirs: _containers.RepeatedCompositeFieldContainer[cgroup_dir_entry]
    is_threaded: bool
    def __init__(self, cnames: _Optional[_Iterable[str]] = ..., dirs: _Optional[_Iterable[_Union[cgroup_dir_entry, _Mapping]]] = ..., is_threaded: _Optional[bool] = ...) -> None: ...

class cg_member_entry(_message.Message):
    __slots__ = ("name", "path", "cgns_prefix")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    CGNS_PREFIX_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    cgns_prefix: int
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., cgns_prefix: _Optional[int] = ...) -> None: ...

class cg_set_entry(_message.Message):
    __slots__ = ("id", "ctls")
    ID_FIELD_NUMBER: _ClassVar[int]
    CTLS_FIELD_NUMBER: _ClassVar[int]
    id: int
    ctls: _containers.RepeatedCompositeFieldContainer[cg_member_entry]
    def __init__(self, id: _Optional[int] = ..., ctls: _Optional[_Iterable[_Union[cg_member_entry, _Mapping]]] = ...) -> None: ...

class cgroup_entry(_message.Message):
    __slots__ = ("sets", "controllers")
    SETS_FIELD_NUMBER: _ClassVar[int]
    CONTROLLERS_FIELD_NUMBER: _ClassVar[int]
    sets: _containers.RepeatedCompositeFieldContainer[cg_set_entry]
    controllers: _containers.RepeatedCompositeFieldContainer[cg_controller_entry]
    def __init__(self, sets: _Optional[_Iterable[_Union[cg_set_entry, _Mapping]]] = ..., controllers: _Optional[_Iterable[_Union[cg_controller_entry, _Mapping]]] = ...) -> None: ...

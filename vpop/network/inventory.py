"""vpop's Nornir inventory plugin: SimpleInventory's files, parsed once, checked strictly.

``nornir.yaml`` selects it (``inventory.plugin: VpopInventory``). It is registered the
ways Nornir documents: by :func:`vpop.network.factory.open_nornir` through
``InventoryPluginRegister`` before every run, and as a ``nornir.plugins.inventory`` entry
point (``pyproject.toml``), so that a plain ``InitNornir(config_file="nornir.yaml")``
finds it too.

It reads the hosts, groups and defaults files of Nornir's SimpleInventory, with the same
meaning, and differs in three ways:

* each file is parsed once per version of it (modification time and size) and every load
  gets a deep copy, so a fresh Nornir per run (see :mod:`vpop.network.factory`) costs no
  YAML parsing and a run's changes to host data never leak into the next run;
* keys Nornir would ignore silently (a misspelt ``plaform``) are refused with
  :class:`~vpop.core.errors.ConfigError`, as is a group that no file defines;
* relative paths are taken from the project root, as everywhere in ``nornir.yaml``.

Only public Nornir classes are used (a test holds that no underscore name is imported).
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any, TypeVar

import ruamel.yaml
from nornir.core.inventory import (
    ConnectionOptions,
    Defaults,
    Group,
    Groups,
    Host,
    Hosts,
    Inventory,
    ParentGroups,
)

from vpop.core.errors import ConfigError
from vpop.core.settings import PROJECT_ROOT

PLUGIN_NAME = "VpopInventory"

# the keys of SimpleInventory's files; Nornir ignores any other silently, vpop refuses them
ELEMENT_KEYS = {
    "hostname",
    "port",
    "username",
    "password",
    "platform",
    "groups",
    "data",
    "connection_options",
}
DEFAULTS_KEYS = ELEMENT_KEYS - {"groups"}
CONNECTION_OPTION_KEYS = {"hostname", "port", "username", "password", "platform", "extras"}
BASE_KEYS = ("hostname", "port", "username", "password", "platform")

_E = TypeVar("_E", bound=Host)

_yaml_cache: dict[Path, tuple[tuple[int, int, int], Any]] = {}
_cache_lock = threading.Lock()


#: A file's version: modification time, size and inode (None: the file does not exist).
FileVersion = tuple[int, int, int] | None


def file_version(path: Path) -> FileVersion:
    """What tells one version of ``path`` from another without reading it (a file replaced
    by a rename has another inode even with the same size and modification time)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


_SCALARS = frozenset({str, int, float, bool, type(None)})


def clone_data(value: Any) -> Any:
    """A deep copy of inventory data: YAML's mappings, lists and scalars copied directly
    (without :func:`copy.deepcopy`'s bookkeeping per object), anything else deep-copied."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _SCALARS else clone_data(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else clone_data(v) for v in value]
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)


def read_yaml(path: Path, encoding: str = "utf-8") -> Any:
    """Parse a YAML file once per version of it (:func:`file_version`), return a fresh copy.

    Args:
        path: The file.
        encoding: Its text encoding.

    Returns:
        The parsed document (``{}`` for an empty one), deep-copied so that the caller
        may change it; None when the file does not exist.
    """
    version = file_version(path)
    if version is None:
        return None
    with _cache_lock:
        cached = _yaml_cache.get(path)
        if cached is None or cached[0] != version:
            data = ruamel.yaml.YAML(typ="safe").load(path.read_text(encoding=encoding)) or {}
            _yaml_cache[path] = (version, data)
        else:
            data = cached[1]
    return clone_data(data)


def check_elements(path: Path, data: Any, *, defaults: bool = False) -> dict[str, Any]:
    """Refuse unknown keys in the parsed content of a hosts, groups or defaults file.

    Args:
        path: The file the data came from (named in errors).
        data: Its parsed content.
        defaults: Whether it is a defaults file (one element, no ``groups``).

    Returns:
        ``{name: entry}``; a defaults file's content is the one entry ``defaults``, and an
        empty entry (``r1:`` alone) is ``{}``.

    Raises:
        ConfigError: naming the file, the entry and the key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    entries = {"defaults": data} if defaults else data
    allowed = DEFAULTS_KEYS if defaults else ELEMENT_KEYS
    checked: dict[str, Any] = {}
    for name, entry in entries.items():
        entry = entry or {}
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {name}: must be a mapping")
        unknown = set(entry) - allowed
        if unknown:
            raise ConfigError(f"{path}: {name}: unknown key(s) {sorted(unknown)}")
        for conn, opts in (entry.get("connection_options") or {}).items():
            bad = set(opts or {}) - CONNECTION_OPTION_KEYS
            if bad:
                raise ConfigError(f"{path}: {name}: connection {conn}: unknown {sorted(bad)}")
        checked[str(name)] = entry
    return checked


def _connection_options(data: dict[str, Any]) -> dict[str, ConnectionOptions]:
    """``connection_options`` of an element, as SimpleInventory builds them."""
    return {
        name: ConnectionOptions(
            **{key: (opts or {}).get(key) for key in BASE_KEYS},
            extras=(opts or {}).get("extras"),
        )
        for name, opts in (data.get("connection_options") or {}).items()
    }


def _defaults(data: dict[str, Any]) -> Defaults:
    """The ``Defaults`` of a defaults file's content."""
    return Defaults(
        **{key: data.get(key) for key in BASE_KEYS},
        data=data.get("data"),
        connection_options=_connection_options(data),
    )


def _element(typ: type[_E], name: str, data: dict[str, Any], defaults: Defaults) -> _E:
    """A host or group without its parent groups (they are linked once all exist)."""
    return typ(
        name=name,
        **{key: data.get(key) for key in BASE_KEYS},
        data=data.get("data"),
        defaults=defaults,
        connection_options=_connection_options(data),
    )


def _parents(path: Path, name: str, data: dict[str, Any], groups: Groups) -> ParentGroups:
    """The element's ``groups`` names as group objects, in the file's order.

    Raises:
        ConfigError: a name that the groups file does not define.
    """
    parents = ParentGroups()
    for group in data.get("groups") or []:
        if group not in groups:
            raise ConfigError(f"{path}: {name}: unknown group {group!r}")
        parents.append(groups[group])
    return parents


class VpopInventory:
    """Nornir inventory plugin (``load() -> Inventory``) over SimpleInventory's files."""

    def __init__(
        self,
        host_file: str = "hosts.yaml",
        group_file: str = "groups.yaml",
        defaults_file: str = "defaults.yaml",
        encoding: str = "utf-8",
    ) -> None:
        """Take the plugin's options from ``nornir.yaml`` (``inventory.options``).

        Args:
            host_file: The hosts file; a missing one is an empty inventory.
            group_file: The groups file; may be missing.
            defaults_file: The defaults file; may be missing.
            encoding: The files' text encoding.
        """
        self.host_file = _project_path(host_file)
        self.group_file = _project_path(group_file)
        self.defaults_file = _project_path(defaults_file)
        self.encoding = encoding

    def _read(self, path: Path, *, defaults: bool = False) -> dict[str, Any]:
        """A file's checked entries (none when it does not exist)."""
        data = read_yaml(path, self.encoding)
        return {} if data is None else check_elements(path, data, defaults=defaults)

    def load(self) -> Inventory:
        """Build a new inventory from the files (parsed at most once per version).

        Every call builds new Host and Group objects, so each run's Nornir is fresh; only
        the YAML parsing (most of ``InitNornir``'s cost) is shared.

        Raises:
            ConfigError: an unknown key, a non-mapping entry or an undefined group.
        """
        defaults_data = self._read(self.defaults_file, defaults=True).get("defaults")
        defaults = _defaults(defaults_data) if defaults_data else Defaults()
        host_data = self._read(self.host_file)
        group_data = self._read(self.group_file)
        hosts = Hosts({n: _element(Host, n, d, defaults) for n, d in host_data.items()})
        groups = Groups({n: _element(Group, n, d, defaults) for n, d in group_data.items()})
        for name, group in groups.items():
            group.groups = _parents(self.group_file, name, group_data[name], groups)
        for name, host in hosts.items():
            host.groups = _parents(self.host_file, name, host_data[name], groups)
        return Inventory(hosts=hosts, groups=groups, defaults=defaults)


def _project_path(path: str) -> Path:
    """``path`` with ``~`` expanded, taken from the project root when relative."""
    return PROJECT_ROOT / Path(path).expanduser()

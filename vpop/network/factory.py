"""Build a fresh Nornir per run, from ``nornir.yaml`` resolved against the project root.

A long-lived Nornir remembers failed hosts and skips them silently, so every run gets its
own (``with open_nornir() as nr:``). Credentials are added by the ``vpop_credentials``
transform function from the environment, or, for lab routers, from the lab's key file
under ``VPOP_LAB_DIR`` (outside the repository).
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ruamel.yaml
import yaml
from nornir.core import Nornir
from nornir.core.configuration import Config
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
from nornir.core.plugins.connections import ConnectionPluginRegister
from nornir.core.plugins.inventory import TransformFunctionRegister
from nornir.core.plugins.runners import RunnersPluginRegister
from nornir.core.state import GlobalState
from nornir.plugins.inventory.simple import _get_defaults, _get_inventory_element
from nornir.plugins.runners import SerialRunner

from tasks.connection import CONNECTION_NAME, VpopShell
from vpop.core.errors import ConfigError
from vpop.core.settings import PROJECT_ROOT, Settings, load_settings

NORNIR_CONFIG = PROJECT_ROOT / "nornir.yaml"

# keys Nornir accepts; it ignores any other silently, so vpop refuses them instead
CONFIG_KEYS: dict[str, set[str]] = {
    "inventory": {"plugin", "options", "transform_function", "transform_function_options"},
    "runner": {"plugin", "options"},
    "logging": {"enabled", "level", "log_file", "format", "to_console", "loggers"},
    "ssh": {"config_file"},
    "core": {"raise_on_error"},
    "user_defined": set(),
}
INVENTORY_OPTION_KEYS = {"host_file", "group_file", "defaults_file", "encoding"}
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


def load_credentials(host: Host, **_: Any) -> None:
    """Transform function: give every host its credentials, never from the inventory.

    ``VPOP_ROUTER_USERNAME``, ``VPOP_ROUTER_PASSWORD`` and ``VPOP_ROUTER_KEY_FILE`` apply to
    every host; hosts of the ``lab`` group fall back to the lab's own generated key.
    """
    settings = load_settings()
    username = os.environ.get("VPOP_ROUTER_USERNAME")
    password = os.environ.get("VPOP_ROUTER_PASSWORD")
    key_file = os.environ.get("VPOP_ROUTER_KEY_FILE")
    if host.get("lab"):
        username = username or "root"
        key_file = key_file or str(settings.lab_dir / "id_ed25519")
    if username:
        host.username = username
    if password:
        host.password = password
    if key_file:
        for name in ("netmiko", CONNECTION_NAME):
            opts = host.connection_options.setdefault(name, ConnectionOptions(extras={}))
            if opts.extras is None:
                opts.extras = {}
            opts.extras["key_file"] = key_file
            if name == "netmiko":
                opts.extras["use_keys"] = True


_registered = False
_yaml_cache: dict[Path, tuple[tuple[int, int], Any]] = {}
_cache_lock = threading.Lock()


def _register_plugins() -> None:
    global _registered
    if _registered:
        return
    ConnectionPluginRegister.auto_register()
    RunnersPluginRegister.auto_register()
    TransformFunctionRegister.register("vpop_credentials", load_credentials)
    ConnectionPluginRegister.register(CONNECTION_NAME, VpopShell)
    _registered = True


def _load_yaml(path: Path) -> Any:
    """Parse a YAML file once per version of it (mtime and size), return a fresh copy."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    version = (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        cached = _yaml_cache.get(path)
        if cached is None or cached[0] != version:
            data = ruamel.yaml.YAML(typ="safe").load(path.read_text()) or {}
            _yaml_cache[path] = (version, data)
        else:
            data = cached[1]
    return copy.deepcopy(data)


def load_inventory(options: dict[str, Any]) -> Inventory:
    """SimpleInventory's files and semantics, with each file parsed once per version.

    Every call still builds new Host and Group objects, so each run's Nornir is fresh;
    only the YAML parsing (most of InitNornir's cost) is shared.
    """
    defaults_dict = _load_yaml(Path(options["defaults_file"]))
    defaults = _get_defaults(defaults_dict) if defaults_dict else Defaults()
    hosts = Hosts()
    for name, data in (_load_yaml(Path(options["host_file"])) or {}).items():
        hosts[name] = _get_inventory_element(Host, data, name, defaults)
    groups = Groups()
    for name, data in (_load_yaml(Path(options["group_file"])) or {}).items():
        groups[name] = _get_inventory_element(Group, data, name, defaults)
    # as in SimpleInventory: until here an element's groups are still names
    for group in groups.values():
        group.groups = ParentGroups([groups[g] for g in group.groups])  # type: ignore[index]
    for host in hosts.values():
        host.groups = ParentGroups([groups[g] for g in host.groups])  # type: ignore[index]
    return Inventory(hosts=hosts, groups=groups, defaults=defaults)


def read_config(path: Path = NORNIR_CONFIG) -> dict[str, Any]:
    """Load ``nornir.yaml`` and refuse any key Nornir would silently ignore.

    Raises:
        ConfigError: unknown section, key or inventory option.
    """
    data = _load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    for section, body in data.items():
        if section not in CONFIG_KEYS:
            raise ConfigError(f"{path}: unknown section {section!r}")
        if section != "user_defined":
            unknown = set(body or {}) - CONFIG_KEYS[section]
            if unknown:
                raise ConfigError(f"{path}: unknown key(s) in {section}: {sorted(unknown)}")
    options = set(data.get("inventory", {}).get("options", {}))
    if options - INVENTORY_OPTION_KEYS:
        raise ConfigError(
            f"{path}: unknown inventory option(s): {sorted(options - INVENTORY_OPTION_KEYS)}"
        )
    return data


def check_inventory_file(path: Path, *, defaults: bool = False) -> None:
    """Refuse unknown keys in a SimpleInventory hosts, groups or defaults file.

    Raises:
        ConfigError: naming the file, the entry and the key.
    """
    data = yaml.safe_load(path.read_text()) or {}
    entries = {"defaults": data} if defaults else data
    allowed = DEFAULTS_KEYS if defaults else ELEMENT_KEYS
    for name, entry in entries.items():
        unknown = set(entry or {}) - allowed
        if unknown:
            raise ConfigError(f"{path}: {name}: unknown key(s) {sorted(unknown)}")
        for conn, opts in ((entry or {}).get("connection_options") or {}).items():
            bad = set(opts or {}) - CONNECTION_OPTION_KEYS
            if bad:
                raise ConfigError(f"{path}: {name}: connection {conn}: unknown {sorted(bad)}")


def hosts_file(settings: Settings) -> Path:
    """The hosts file in use: VPOP_INVENTORY_HOSTS, else the lab's, else the repository's."""
    if settings.inventory_hosts:
        return Path(settings.inventory_hosts)
    if settings.lab_hosts_file.exists():
        return settings.lab_hosts_file
    return PROJECT_ROOT / "inventory" / "hosts.yaml"


def nornir_config(settings: Settings | None = None) -> dict[str, Any]:
    """The configuration passed to ``InitNornir``: paths absolute, hosts file chosen."""
    settings = settings or load_settings()
    data = read_config()
    options = dict(data["inventory"].get("options", {}))
    for key in ("host_file", "group_file", "defaults_file"):
        if key in options:
            options[key] = str((PROJECT_ROOT / options[key]).resolve())
    options["host_file"] = str(hosts_file(settings))
    data["inventory"] = {**data["inventory"], "options": options}
    return data


@contextmanager
def open_nornir(settings: Settings | None = None, **overrides: Any) -> Iterator[Nornir]:
    """A fresh Nornir for one run; its connections are closed when the block ends.

    Equivalent to ``InitNornir(**nornir_config())`` (a test checks it), built directly so
    that plugin discovery and YAML parsing are not repeated for every run.
    """
    _register_plugins()
    data = nornir_config(settings)
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}
    config = Config.from_dict(**data)
    if config.inventory.plugin != "SimpleInventory":
        raise ConfigError("vpop reads SimpleInventory files (inventory.plugin: SimpleInventory)")
    inventory = load_inventory(config.inventory.options)
    if config.inventory.transform_function:
        transform = TransformFunctionRegister.get_plugin(config.inventory.transform_function)
        for host in inventory.hosts.values():
            transform(host, **(config.inventory.transform_function_options or {}))
    runner = RunnersPluginRegister.get_plugin(config.runner.plugin)(**config.runner.options)
    nr = Nornir(inventory=inventory, runner=runner, config=config, data=GlobalState())
    try:
        yield nr
    finally:
        nr.close_connections(on_good=True, on_failed=True)


def one_router(nr: Nornir, name: str) -> Nornir:
    """``nr`` filtered to one host, with a serial runner: a thread pool per run buys
    nothing for one host and costs a thread start and hand-offs on every run."""
    return nr.filter(name=name).with_runner(SerialRunner())

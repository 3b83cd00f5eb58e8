"""Build a fresh Nornir per run, from ``nornir.yaml`` resolved against the project root.

A long-lived Nornir remembers failed hosts and skips them silently, so every run gets its
own (``with open_nornir() as nr:``). The inventory comes from the ``VpopInventory``
plugin (:mod:`vpop.network.inventory`), which ``nornir.yaml`` selects. Credentials are
added by the ``vpop_credentials`` transform function from the settings
(``VPOP_ROUTER_*``), or, for lab routers, from the lab's key file under ``VPOP_LAB_DIR``
(outside the repository).

Loading and transforming the inventory is done once per version of what it is built
from (``nornir.yaml``, the hosts, groups and defaults files, the hosts' known-hosts files,
the settings); every run gets its own copy of the hosts, groups and defaults, so runs,
even concurrent ones, share no Host, connection or data. A job that runs on the same routers
again and again (a batch of counter polls) keeps its Nornir per thread instead
(:func:`routers_nornir`): no two threads share one, and each block leaves it as a fresh one.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from nornir.core import Nornir
from nornir.core.configuration import Config
from nornir.core.inventory import (
    BaseAttributes,
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
from nornir.core.plugins.inventory import InventoryPluginRegister, TransformFunctionRegister
from nornir.core.plugins.runners import RunnersPluginRegister
from nornir.core.state import GlobalState
from nornir.core.task import AggregatedResult, Task
from nornir.plugins.runners import SerialRunner

from tasks.connection import CONNECTION_NAME, VpopShell
from vpop.core.errors import ConfigError
from vpop.core.settings import PROJECT_ROOT, Settings, load_settings
from vpop.network.hostkeys import known_hosts_file, pin_connections
from vpop.network.inventory import (
    PLUGIN_NAME,
    FileVersion,
    VpopInventory,
    check_elements,
    clone_data,
    file_version,
    read_yaml,
)

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


def load_credentials(host: Host, **_: Any) -> None:
    """Transform function: give every host its credentials, never from the inventory.

    ``VPOP_ROUTER_USERNAME``, ``VPOP_ROUTER_PASSWORD`` and ``VPOP_ROUTER_KEY_FILE`` apply to
    every host; hosts of the ``lab`` group fall back to the lab's own generated key. Every
    connection is also told the host's pinned host keys (:func:`hostkeys.pin_connections`),
    so that no credential goes to a router whose key is not pinned.

    Raises:
        ConfigError: the host's ``host_key`` or ``known_hosts`` data is malformed.
    """
    settings = load_settings()
    pin_connections(host, known_hosts_file(host, settings, hosts_file(settings)))
    username = settings.router_username
    password = settings.router_password.get_secret_value() if settings.router_password else None
    key_file = settings.router_key_file
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


def register_plugins() -> None:
    """Register the plugins a run needs, once per process (Netmiko, NAPALM and their drivers
    load here: about 600 modules, 0.3 s; a long-running process calls it at its start,
    :func:`vpop.jobs.runner.settle_heap`).

    Installed plugins come from their entry points; vpop's own (the inventory, the
    credentials transform, the ``vpop_shell`` connection) are registered by name here
    too, so that they work from a source tree whose entry points are not installed.
    """
    global _registered
    if _registered:
        return
    ConnectionPluginRegister.auto_register()
    RunnersPluginRegister.auto_register()
    InventoryPluginRegister.register(PLUGIN_NAME, VpopInventory)
    TransformFunctionRegister.register("vpop_credentials", load_credentials)
    ConnectionPluginRegister.register(CONNECTION_NAME, VpopShell)
    _registered = True


def read_config(path: Path = NORNIR_CONFIG) -> dict[str, Any]:
    """Load ``nornir.yaml`` and refuse any key Nornir would silently ignore.

    Raises:
        ConfigError: unknown section, key or inventory option.
    """
    data = read_yaml(path) or {}
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

    The same check :class:`~vpop.network.inventory.VpopInventory` makes on every load,
    here for a file on its own (the lab's hosts file, the repository's inventory).

    Raises:
        ConfigError: naming the file, the entry and the key.
    """
    check_elements(path, yaml.safe_load(path.read_text()) or {}, defaults=defaults)


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


_E = TypeVar("_E", bound=Host)
_R = TypeVar("_R")


@dataclass(frozen=True)
class _Parsed:
    """An inventory loaded and transformed once, and what it was built from.

    ``inventory`` is never handed out: every run gets a copy (:func:`copy_inventory`).
    """

    settings: Settings  # open_nornir's (the hosts file)
    credentials: Settings  # load_settings()'s (what the transform reads)
    hosts_path: Path
    sources: tuple[tuple[Path, FileVersion], ...]
    data: dict[str, Any]
    inventory: Inventory

    def current(self, settings: Settings, credentials: Settings, hosts_path: Path) -> bool:
        """Whether nothing it was built from has changed since."""
        return (
            hosts_path == self.hosts_path
            and settings == self.settings
            and credentials == self.credentials
            and all(file_version(path) == version for path, version in self.sources)
        )


_parsed: _Parsed | None = None
_parse_lock = threading.Lock()


def _parse(
    settings: Settings,
    credentials: Settings,
    hosts_path: Path,
    overrides: dict[str, Any] | None = None,
) -> _Parsed:
    """Load ``nornir.yaml`` and the inventory, and apply the transform function.

    The files' versions are read before the files, so a change made while they are read
    is seen by the next call.

    Args:
        settings: open_nornir's settings (the hosts file).
        credentials: The settings the transform reads.
        hosts_path: The hosts file of ``settings``.
        overrides: ``inventory`` options of open_nornir's overrides, if any.

    Raises:
        ConfigError: an invalid ``nornir.yaml`` or inventory, another inventory plugin.
    """
    config_version = file_version(NORNIR_CONFIG)
    data = nornir_config(settings)
    if overrides:
        data["inventory"] = {**data["inventory"], **overrides}
    options = data["inventory"].get("options", {})
    files = [Path(options[k]) for k in ("host_file", "group_file", "defaults_file") if k in options]
    versions = [(path, file_version(path)) for path in files]
    config = Config.from_dict(**data)
    if config.inventory.plugin != PLUGIN_NAME:
        raise ConfigError(f"vpop reads its inventory with {PLUGIN_NAME} (inventory.plugin)")
    plugin = InventoryPluginRegister.get_plugin(config.inventory.plugin)
    inventory = plugin(**config.inventory.options).load()
    if config.inventory.transform_function:
        transform = TransformFunctionRegister.get_plugin(config.inventory.transform_function)
        for host in inventory.hosts.values():
            transform(host, **(config.inventory.transform_function_options or {}))
    # the transform records only the known-hosts files' names (sessions read them), so
    # their versions may be taken after it
    beside = hosts_file(credentials)
    pins = {known_hosts_file(host, credentials, beside) for host in inventory.hosts.values()}
    versions += [(path, file_version(path)) for path in sorted(pins)]
    return _Parsed(
        settings,
        credentials,
        hosts_path,
        ((NORNIR_CONFIG, config_version), *versions),
        data,
        inventory,
    )


def _cached_parse(settings: Settings | None) -> _Parsed:
    """The parsed inventory for ``settings``, from the cache while it is current."""
    global _parsed
    credentials = load_settings()
    settings = settings or credentials
    hosts_path = hosts_file(settings)
    found = _parsed
    if found is not None and found.current(settings, credentials, hosts_path):
        return found
    with _parse_lock:  # one parse at a time; a caller that waited finds it done
        found = _parsed
        if found is None or not found.current(settings, credentials, hosts_path):
            found = _parsed = _parse(settings, credentials, hosts_path)
        return found


def _options(options: dict[str, ConnectionOptions]) -> dict[str, ConnectionOptions]:
    return {
        name: ConnectionOptions(**BaseAttributes.dict(o), extras=clone_data(o.extras))
        for name, o in options.items()
    }


def copy_inventory(inventory: Inventory, only: Collection[str] | None = None) -> Inventory:
    """A copy of ``inventory`` that shares no mutable object with it.

    New Host, Group and Defaults objects with their own data, connection options and
    (empty) connections; their own attributes as they are (not what they inherit). With
    ``only``, the copy holds just the hosts of those names (every group still): a run on
    one router copies that router, however many the inventory has.
    """
    old = inventory.defaults
    defaults = Defaults(
        **BaseAttributes.dict(old),
        data=clone_data(old.data),
        connection_options=_options(old.connection_options),
    )

    def element(typ: type[_E], item: Host) -> _E:
        return typ(
            name=item.name,
            **BaseAttributes.dict(item),
            data=clone_data(item.data),
            connection_options=_options(item.connection_options),
            defaults=defaults,
        )

    groups = Groups({n: element(Group, g) for n, g in inventory.groups.items()})
    chosen = inventory.hosts
    if only is not None:
        chosen = Hosts({n: chosen[n] for n in only if n in chosen})
    hosts = Hosts({n: element(Host, h) for n, h in chosen.items()})
    for copies, originals in ((groups, inventory.groups), (hosts, chosen)):
        for name, item in originals.items():
            copies[name].groups = ParentGroups(groups[g.name] for g in item.groups)
    return Inventory(hosts=hosts, groups=groups, defaults=defaults)


@contextmanager
def open_nornir(
    settings: Settings | None = None, *, hosts: Collection[str] | None = None, **overrides: Any
) -> Iterator[Nornir]:
    """A fresh Nornir for one run; its connections are closed when the block ends.

    ``hosts`` narrows its inventory to the hosts of those names (a name not in the
    inventory is left out): a poll of one router copies only that router.

    Equivalent to ``InitNornir(**nornir_config())`` (a test checks it), built directly so
    that plugin discovery, YAML parsing and the transform are not repeated for every run:
    the inventory is loaded and transformed once per version of its sources and copied
    for each run. Thread-safe.

    Raises:
        ConfigError: an invalid ``nornir.yaml`` or inventory.
    """
    register_plugins()
    if "inventory" in overrides:  # another inventory than nornir.yaml's: not cached
        credentials = load_settings()
        chosen = settings or credentials
        parsed = _parse(chosen, credentials, hosts_file(chosen), overrides.pop("inventory"))
    else:
        parsed = _cached_parse(settings)
    nr = _build(parsed, hosts, overrides)
    try:
        yield nr
    finally:
        nr.close_connections(on_good=True, on_failed=True)


def _build(parsed: _Parsed, hosts: Collection[str] | None, overrides: dict[str, Any]) -> Nornir:
    """A Nornir of ``parsed``'s inventory (copied; narrowed to ``hosts`` when given), its
    configuration's sections updated with ``overrides``."""
    data = parsed.data
    if overrides:
        data = {**data, **{s: {**data.get(s, {}), **v} for s, v in overrides.items()}}
    config = Config.from_dict(**data)
    runner = RunnersPluginRegister.get_plugin(config.runner.plugin)(**config.runner.options)
    inventory = copy_inventory(parsed.inventory, hosts)
    return Nornir(inventory=inventory, runner=runner, config=config, data=GlobalState())


class PooledRunner:
    """Runs a task on each host at once: the last host on the calling thread, the others on
    threads kept for the process (:class:`HostThreads`), as Nornir's ``ThreadedRunner``
    does with a pool of its own per run. A pool per run cost about 40 µs of CPU per host on
    this project's 2-core VM (thread starts), against about 10 µs handed to kept threads,
    and a batch of counter polls runs every few seconds."""

    def run(self, task: Task, hosts: list[Host]) -> AggregatedResult:
        """Run ``task`` on ``hosts``; every host's result, in the hosts' order."""
        result = AggregatedResult(task.name)
        if not hosts:
            return result
        *others, last = hosts
        futures = [_HOST_THREADS.submit(task.copy().start, host) for host in others]
        done = task.copy().start(last)
        for future in futures:
            host_result = future.result()
            result[host_result.host.name] = host_result
        result[last.name] = done
        return result


class HostThreads:
    """A thread pool whose threads never hold up the process's exit (daemon threads).

    ``concurrent.futures.ThreadPoolExecutor`` joins its threads when the interpreter exits,
    so a router that hangs during a poll (its agent call waits up to 30 s) would keep a
    stopping ``vpop worker`` alive until the call times out; here, as with the job's own
    thread, the process exits and the call is abandoned. Threads start as work comes, up to
    ``most``, and are kept; an idle one takes the next item.
    """

    def __init__(self, most: int) -> None:
        """Up to ``most`` threads."""
        self._most = most
        self._start_empty()
        # a forked child (a supervised process) has none of its parent's threads
        os.register_at_fork(after_in_child=self._start_empty)

    def _start_empty(self) -> None:
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]]
        self._work = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one release per thread waiting for work
        self._threads = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., _R], *args: Any) -> Future[_R]:
        """Run ``fn(*args)`` on one of the threads; its future."""
        future: Future[_R] = Future()
        self._work.put((future, fn, args))
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if self._threads < self._most:
                    self._threads += 1
                    name = f"vpop-hosts-{self._threads}"
                    threading.Thread(target=self._serve, name=name, daemon=True).start()
        return future

    def _serve(self) -> None:
        while True:  # for the process's life (a daemon thread)
            future, fn, args = self._work.get()
            if future.set_running_or_notify_cancel():
                try:
                    outcome = fn(*args)
                except BaseException as err:  # handed to the waiting caller
                    future.set_exception(err)
                else:
                    future.set_result(outcome)
            del future, fn, args  # nothing of the last item kept while idle
            self._idle.release()


_HOST_THREADS = HostThreads(32)


# per thread: each kept Nornir (routers_nornir) by its routers, with the parse it was built from
_kept = threading.local()
_SERIAL = {"runner": {"plugin": "serial", "options": {}}}


@contextmanager
def routers_nornir(routers: Sequence[str]) -> Iterator[Nornir]:
    """``open_nornir(hosts=routers)`` for a job that runs on the same routers again and
    again (a batch of counter polls): the Nornir is built once per thread, routers and
    version of the inventory, and kept. Building it was about 5 % of a poll's CPU. With one
    router its runner is serial; with more, a :class:`PooledRunner` runs them at once.

    When the block ends, its connections are closed (their sessions go back to the pool) and
    its failed hosts forgotten, as a fresh Nornir's would be; the next block on this thread
    gets it as a fresh one would be. Its hosts and their data are this thread's own copy, so
    a task run with it must not change them (the monitoring tasks only read them).

    Raises:
        ConfigError: an invalid ``nornir.yaml`` or inventory.
    """
    register_plugins()  # the inventory plugin too: this may be the process's first run
    parsed = _cached_parse(None)
    kept: dict[tuple[str, ...], tuple[_Parsed, Nornir]] | None = getattr(_kept, "nornirs", None)
    if kept is None:
        kept = _kept.nornirs = {}
    key = tuple(routers)
    found = kept.get(key)
    if found is None or found[0] is not parsed:
        built = _build(parsed, key, _SERIAL)
        found = kept[key] = (parsed, built if len(key) < 2 else built.with_runner(PooledRunner()))
    nr = found[1]
    try:
        yield nr
    finally:
        nr.close_connections(on_good=True, on_failed=True)
        nr.data.reset_failed_hosts()


def one_router(nr: Nornir, name: str) -> Nornir:
    """``nr`` filtered to one host, with a serial runner: a thread pool per run buys
    nothing for one host and costs a thread start and hand-offs on every run."""
    return nr.filter(name=name).with_runner(SerialRunner())

"""The real nornir.yaml and inventory load, and unknown keys (which Nornir ignores) fail.

The inventory comes from vpop's own plugin, registered the documented ways; nothing of
Nornir's private API (underscore names) is imported anywhere.
"""

from __future__ import annotations

import ast
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from vpop.core.errors import ConfigError
from vpop.core.settings import PROJECT_ROOT, Settings
from vpop.network.factory import (
    NORNIR_CONFIG,
    check_inventory_file,
    nornir_config,
    open_nornir,
    read_config,
)
from vpop.network.inventory import PLUGIN_NAME, VpopInventory

INVENTORY = PROJECT_ROOT / "inventory"


def test_real_nornir_yaml_has_only_known_keys() -> None:
    data = read_config(NORNIR_CONFIG)
    assert data["inventory"]["plugin"] == PLUGIN_NAME
    assert data["inventory"]["transform_function"] == "vpop_credentials"
    assert data["runner"]["plugin"] == "threaded"


@pytest.mark.parametrize("name", ["hosts.yaml", "groups.yaml", "defaults.yaml"])
def test_real_inventory_files_have_only_known_keys(name: str) -> None:
    check_inventory_file(INVENTORY / name, defaults=name == "defaults.yaml")


def test_lab_inventory_has_only_known_keys(lab: dict[str, Any]) -> None:
    check_inventory_file(Path(lab["lab_dir"]) / "hosts.yaml")


@pytest.mark.parametrize(
    "text",
    [
        "inventory:\n  plugin: SimpleInventory\n  transfrom_function: x\n",
        "inventroy:\n  plugin: SimpleInventory\n",
        "inventory:\n  plugin: SimpleInventory\n  options:\n    hosts_file: a.yaml\n",
    ],
    ids=["misspelt-key", "misspelt-section", "misspelt-option"],
)
def test_unknown_config_keys_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "nornir.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        read_config(path)


@pytest.mark.parametrize(
    "text",
    [
        "r1:\n  hostname: 127.0.0.1\n  plaform: frr\n",
        "r1:\n  connection_options:\n    netmiko:\n      extra: {}\n",
    ],
    ids=["host-key", "connection-option-key"],
)
def test_unknown_inventory_keys_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        check_inventory_file(path)


def test_paths_resolve_from_project_root_not_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("r9:\n  hostname: 127.0.0.1\n  groups: [ios]\n")
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", str(hosts))
    options = nornir_config(Settings())["inventory"]["options"]
    assert options["group_file"] == str(INVENTORY / "groups.yaml")
    with open_nornir(Settings()) as nr:
        assert list(nr.inventory.hosts) == ["r9"]
        assert nr.inventory.hosts["r9"].platform == "ios"


def test_credentials_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("r9:\n  hostname: 127.0.0.1\n  groups: [ios]\n")
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", str(hosts))
    monkeypatch.setenv("VPOP_ROUTER_USERNAME", "noc")
    monkeypatch.setenv("VPOP_ROUTER_PASSWORD", "from-env")
    with open_nornir(Settings()) as nr:
        host = nr.inventory.hosts["r9"]
        assert (host.username, host.password) == ("noc", "from-env")
    for name in ("hosts.yaml", "groups.yaml", "defaults.yaml"):
        text = (INVENTORY / name).read_text()
        assert "password:" not in text and "username:" not in text
    assert os.environ.get("VPOP_ROUTER_PASSWORD") == "from-env"


def test_factory_builds_what_init_nornir_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nornir import InitNornir

    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(
        "r1:\n  hostname: 127.0.0.1\n  port: 2222\n  groups: [frr, lab]\n"
        "  data: {default_isp: isp-a}\nr2:\n  hostname: 127.0.0.2\n  groups: [junos]\n"
    )
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", str(hosts))
    with open_nornir(Settings()) as ours:
        reference = InitNornir(**nornir_config(Settings()))
        assert ours.inventory.dict() == reference.inventory.dict()
        assert type(ours.runner) is type(reference.runner)
        assert ours.config.dict() == reference.config.dict()


def test_inventory_changes_are_seen_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("r1:\n  hostname: 127.0.0.1\n  groups: [ios]\n")
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", str(hosts))
    with open_nornir(Settings()) as nr:
        assert list(nr.inventory.hosts) == ["r1"]
        nr.inventory.hosts["r1"].data["scratch"] = True  # must not leak into the next run
    hosts.write_text("r1:\n  hostname: 127.0.0.1\n  groups: [ios]\nr2:\n  groups: [ios]\n")
    with open_nornir(Settings()) as nr:
        assert sorted(nr.inventory.hosts) == ["r1", "r2"]
        assert "scratch" not in nr.inventory.hosts["r1"].data


RICH_HOSTS = """\
r1:
  hostname: 127.0.0.1
  port: 2222
  groups: [frr, lab]
  data: {default_isp: isp-a}
  connection_options:
    netmiko:
      extras: {conn_timeout: 5}
r2:
  hostname: 127.0.0.2
  username: ops
  platform: ios
  groups: [ios]
r3:
"""


def test_vpop_inventory_reads_what_simple_inventory_reads(tmp_path: Path) -> None:
    from nornir.plugins.inventory.simple import SimpleInventory

    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(RICH_HOSTS.replace("r3:\n", ""))  # SimpleInventory fails on an empty entry
    options = {
        "host_file": str(hosts),
        "group_file": str(INVENTORY / "groups.yaml"),
        "defaults_file": str(INVENTORY / "defaults.yaml"),
    }
    ours = VpopInventory(**options).load()
    reference = SimpleInventory(**options).load()
    assert ours.dict() == reference.dict()
    assert ours.hosts["r1"].get_connection_parameters("netmiko").dict() == (
        reference.hosts["r1"].get_connection_parameters("netmiko").dict()
    )


def test_relative_paths_are_taken_from_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    inventory = VpopInventory(
        host_file="inventory/hosts.yaml",
        group_file="inventory/groups.yaml",
        defaults_file="inventory/defaults.yaml",
    ).load()
    assert "frr" in inventory.groups
    assert inventory.defaults.data == {"site": "routing-centre"}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("r1:\n  hostname: 127.0.0.1\n  plaform: frr\n", "unknown key(s) ['plaform']"),
        ("r1:\n  groups: [frr, nope]\n", "unknown group 'nope'"),
        ("- r1\n", "top level must be a mapping"),
    ],
    ids=["unknown-key", "unknown-group", "not-a-mapping"],
)
def test_the_plugin_refuses_what_nornir_would_ignore_or_crash_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, why: str
) -> None:
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(text)
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", str(hosts))
    with pytest.raises(ConfigError, match=r"hosts\.yaml: ") as err, open_nornir(Settings()):
        pass
    assert why in err.value.message


def test_nornir_yaml_names_the_registered_plugin() -> None:
    from nornir.core.plugins.inventory import InventoryPluginRegister

    assert read_config()["inventory"]["plugin"] == PLUGIN_NAME
    with open_nornir(Settings()):  # registers vpop's plugins
        assert InventoryPluginRegister.get_plugin(PLUGIN_NAME) is VpopInventory
    points = {ep.name: ep for ep in metadata.entry_points(group="nornir.plugins.inventory")}
    assert points[PLUGIN_NAME].load() is VpopInventory


def test_plain_init_nornir_finds_the_plugin_by_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nornir import InitNornir

    monkeypatch.chdir(tmp_path)  # the plugin takes nornir.yaml's paths from the project root
    nr = InitNornir(config_file=str(NORNIR_CONFIG))
    assert "frr" in nr.inventory.groups
    assert nr.inventory.defaults.data == {"site": "routing-centre"}


def _nornir_private_imports(path: Path) -> list[str]:
    """``file:line name`` for every underscore name imported from nornir in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nornir":
            modules = [node.module or ""]
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names if a.name.split(".")[0] == "nornir"]
            names = []
        else:
            continue
        private = [n for n in names if n.startswith("_")] + [
            m for m in modules if any(part.startswith("_") for part in m.split("."))
        ]
        found += [f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {name}" for name in private]
    return found


def test_no_source_file_imports_a_private_name_from_nornir() -> None:
    offenders = [
        hit
        for package in ("vpop", "tasks", "webhooks", "bench", "tests")
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
        for hit in _nornir_private_imports(path)
    ]
    assert offenders == []

"""The real nornir.yaml and inventory load, and unknown keys (which Nornir ignores) fail."""

from __future__ import annotations

import os
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

INVENTORY = PROJECT_ROOT / "inventory"


def test_real_nornir_yaml_has_only_known_keys() -> None:
    data = read_config(NORNIR_CONFIG)
    assert data["inventory"]["plugin"] == "SimpleInventory"
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

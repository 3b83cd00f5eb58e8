"""IOS interface counters: golden ``show interfaces`` captures through ntc-templates, and the
Nornir task run by a real Nornir against a fake device (only the device is fake: Netmiko's
own TextFSM step and ntc-templates parse the text)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from netmiko.utilities import structured_data_converter
from nornir.core import Nornir

from tasks.collect_ios import (
    COUNTER_FIELDS,
    InterfaceCountersError,
    collect_interface_counters_ios,
    counter_width,
    interfaces_from_ntc,
    parse_show_interfaces,
)
from vpop.core.settings import Settings
from vpop.network.factory import open_nornir

GOLDEN = Path(__file__).parent / "collect_ios"
CASES = sorted(GOLDEN.glob("*.raw"))
IDS = [case.stem for case in CASES]

NOT_SHOW_INTERFACES = {
    "invalid-input": "show interfaces\n              ^\n% Invalid input detected at '^' marker.\n",
    "empty": "",
    "junos": "Physical interface: ge-0/0/0, Enabled, Physical link is Up\n"
    "  Input packets : 4294901760\n  Output packets: 3120987654\n",
}


def counters(raw: str) -> dict[str, Any]:
    """What the task returns for this output: vpop's conversion of the ntc-templates parse."""
    rows = parse_show_interfaces(raw)
    return {"interfaces": interfaces_from_ntc(rows), "width": counter_width(rows)}


def expected(raw_file: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(raw_file.with_suffix(".yml").read_text())
    return data


# ---- golden captures ----------------------------------------------------------------------


def test_golden_cases_are_discovered() -> None:
    assert len(CASES) >= 2, f"fewer than 2 show interfaces captures in {GOLDEN}"
    stray = sorted(p.name for p in GOLDEN.glob("*.yml") if not p.with_suffix(".raw").exists())
    assert not stray, f".yml files without a .raw capture: {stray}"


@pytest.mark.parametrize("raw_file", CASES, ids=IDS)
def test_capture_parses_into_expected_counters(raw_file: Path, update_golden: bool) -> None:
    got = counters(raw_file.read_text())
    yml = raw_file.with_suffix(".yml")
    if update_golden:
        yml.write_text(yaml.safe_dump(got, explicit_start=True))
    assert yml.exists(), f"run pytest --update to create {yml.name}"
    assert got == expected(raw_file)


@pytest.mark.parametrize("raw_file", CASES, ids=IDS)
def test_every_counter_is_an_int(raw_file: Path) -> None:
    result = counters(raw_file.read_text())
    assert result["width"] in (32, 64)
    assert result["interfaces"], "no interface parsed"
    for name, values in result["interfaces"].items():
        assert isinstance(name, str) and name
        assert set(values) <= set(COUNTER_FIELDS), name
        assert all(type(v) is int and v >= 0 for v in values.values()), (name, values)


def test_golden_cases_cover_what_the_brief_asks_for() -> None:
    names = [n for case in CASES for n in expected(case)["interfaces"]]
    assert any(n.startswith("Loopback") for n in names)
    assert any("." in n for n in names), "no sub-interface"
    raw = "".join(case.read_text() for case in CASES)
    assert re.search(r"^\S+ is administratively down, line protocol is down", raw, re.M)
    assert re.search(r"^\S+ is down, line protocol is down", raw, re.M)
    assert re.search(r"^\S+ is up, line protocol is up", raw, re.M)
    values = [
        v for case in CASES for c in expected(case)["interfaces"].values() for v in c.values()
    ]
    assert any(2**32 - 2**16 <= v < 2**32 for v in values), "no counter near 2**32"


# ---- the conversion -----------------------------------------------------------------------


def test_fields_map_to_counters() -> None:
    row = {
        "interface": "GigabitEthernet0/0",
        "input_packets": "10",
        "output_packets": "20",
        "input_errors": "1",
        "output_errors": "2",
        "queue_drops": "3",
        "queue_output_drops": "4",
        "input_bytes": "1000",
        "output_bytes": "2000",
        "crc": "1",
    }
    assert interfaces_from_ntc([row]) == {
        "GigabitEthernet0/0": {
            "rx_bytes": 1000,
            "tx_bytes": 2000,
            "rx_packets": 10,
            "tx_packets": 20,
            "errors": 3,
            "drops": 7,
        }
    }


def test_empty_fields_are_absent_counters_not_zero() -> None:
    rows = [
        {"interface": "Gi0/0.100", "input_packets": "", "output_packets": ""},
        {"interface": "Gi0/1", "input_packets": "5", "input_errors": "1", "output_errors": ""},
    ]
    assert interfaces_from_ntc(rows) == {"Gi0/0.100": {}, "Gi0/1": {"rx_packets": 5}}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"interface": "", "input_packets": "1"}], "no interface name"),
        ([{"input_packets": "1"}], "no interface name"),
        ([{"interface": "Gi0/0"}, {"interface": "Gi0/0"}], "listed twice"),
        ([{"interface": "Gi0/0", "input_packets": "-1"}], "not a whole number"),
        ([{"interface": "Gi0/0", "input_packets": "1e9"}], "not a whole number"),
        ([{"interface": "Gi0/0", "input_packets": "\u0661"}], "not a whole number"),
    ],
    ids=["empty-name", "no-name", "duplicate", "negative", "float", "arabic-digit"],
)
def test_bad_rows_are_refused(rows: list[dict[str, str]], message: str) -> None:
    with pytest.raises(InterfaceCountersError, match=message):
        interfaces_from_ntc(rows)


def test_width_is_32_until_a_counter_is_wider() -> None:
    assert counter_width([{"interface": "Gi0/0", "input_packets": str(2**32 - 1)}]) == 32
    assert counter_width([{"interface": "Gi0/0", "output_packets": str(2**32)}]) == 64
    assert counter_width([{"interface": "Gi0/0", "input_packets": ""}]) == 32


@pytest.mark.parametrize("raw", list(NOT_SHOW_INTERFACES.values()), ids=list(NOT_SHOW_INTERFACES))
def test_parse_refuses_output_it_cannot_parse(raw: str) -> None:
    with pytest.raises(InterfaceCountersError):
        parse_show_interfaces(raw)


# ---- the Nornir task, against a fake device -----------------------------------------------


class FakeIOS:
    """A Netmiko connection to an IOS device that prints ``raw`` for ``show interfaces``.

    ``send_command`` does what Netmiko's does once it has read the output: it hands the
    text to :func:`netmiko.utilities.structured_data_converter` (ntc-templates, for real).
    """

    device_type = "cisco_ios"

    def __init__(self, raw: str, *, honour_raise_parsing_error: bool = True) -> None:
        self.raw = raw
        self.honour = honour_raise_parsing_error
        self.commands: list[str] = []

    def send_command(
        self,
        command_string: str,
        *,
        use_textfsm: bool = False,
        textfsm_template: str | None = None,
        raise_parsing_error: bool = False,
        **_: Any,
    ) -> Any:
        self.commands.append(command_string)
        if command_string.strip() != "show interfaces":
            return f"% Invalid input: {command_string}"
        return structured_data_converter(
            raw_data=self.raw,
            command=command_string,
            platform=self.device_type,
            use_textfsm=use_textfsm,
            textfsm_template=textfsm_template,
            raise_parsing_error=raise_parsing_error and self.honour,
        )


class FakeConnection:
    """The connection plugin object Nornir keeps in ``host.connections``."""

    def __init__(self, device: FakeIOS) -> None:
        self.connection = device
        self.closed = False

    def open(self, *_: Any, **__: Any) -> None:
        raise AssertionError("the fake connection is injected, never opened")

    def close(self) -> None:
        self.closed = True


# netmiko 4.8.0 finds ntc-templates with importlib.resources.path(), deprecated before 3.13:
# a DeprecationWarning each time send_command(use_textfsm=True) looks up an ntc template.
netmiko_template_lookup = pytest.mark.filterwarnings(
    r"ignore:path is deprecated\. Use files\(\) instead:DeprecationWarning"
)


@pytest.fixture
def nornir_r1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Nornir]:
    """A real Nornir from the project's factory, with one ios host r1 (no device behind it)."""
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("r1: {hostname: 127.0.0.1, groups: [ios]}\n")
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", str(hosts))
    with open_nornir(Settings()) as nr:
        yield nr


def run_with(nr: Nornir, device: FakeIOS) -> Any:
    host = nr.inventory.hosts["r1"]
    assert host.platform == "ios"
    host.connections["netmiko"] = FakeConnection(device)
    return nr.run(task=collect_interface_counters_ios)["r1"]


@netmiko_template_lookup
@pytest.mark.parametrize("raw_file", CASES, ids=IDS)
def test_task_returns_counters_as_data(nornir_r1: Nornir, raw_file: Path) -> None:
    device = FakeIOS(raw_file.read_text())
    multi = run_with(nornir_r1, device)
    assert not multi.failed, multi[0].exception
    result = multi[0].result
    assert device.commands == ["show interfaces"]
    assert not isinstance(result, str)
    assert isinstance(result, dict) and set(result) == {"interfaces", "width"}
    assert result == expected(raw_file)
    assert multi[0].changed is False
    for values in result["interfaces"].values():
        assert all(type(v) is int for v in values.values())


@netmiko_template_lookup
@pytest.mark.parametrize("raw", list(NOT_SHOW_INTERFACES.values()), ids=list(NOT_SHOW_INTERFACES))
def test_task_fails_on_output_the_template_cannot_parse(nornir_r1: Nornir, raw: str) -> None:
    multi = run_with(nornir_r1, FakeIOS(raw))
    assert multi.failed
    assert isinstance(multi[0].exception, InterfaceCountersError)
    assert "r1" in nornir_r1.data.failed_hosts


@netmiko_template_lookup
def test_task_fails_when_netmiko_hands_back_the_raw_string(nornir_r1: Nornir) -> None:
    # e.g. a Netmiko that ignores raise_parsing_error: the task never returns a string
    multi = run_with(nornir_r1, FakeIOS("\n", honour_raise_parsing_error=False))
    assert multi.failed
    assert isinstance(multi[0].exception, InterfaceCountersError)
    assert "expected a list of parsed records" in str(multi[0].exception)

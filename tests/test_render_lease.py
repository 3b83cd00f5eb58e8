"""Lease policers (ios, junos): golden files, the peak-rate arithmetic, validation and the
structure check. Golden layout: ``templates_lease/<platform>/<case>.vars.yaml`` (a lease)
beside ``<case>.expected.cfg``; ``pytest --update`` rewrites the expected files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from vpop.core import validate
from vpop.core.errors import BadInput
from vpop.network import leases as render_module
from vpop.network.filters import junos_number
from vpop.network.leases import (
    LEASE_MAX_BURST_BYTES,
    LEASE_MAX_PEAK_BPS,
    LEASE_PLATFORMS,
    LEASE_TEMPLATE_ROOT,
    lease_environment,
    render_lease,
    validate_lease,
)
from vpop.network.structure import StructureError

GOLDEN = Path(__file__).parent / "templates_lease"
CASES = sorted(GOLDEN.glob("*/*.vars.yaml"))


def case_name(vars_file: Path) -> str:
    return vars_file.name.removesuffix(".vars.yaml")


def expected_file(vars_file: Path) -> Path:
    return vars_file.with_name(f"{case_name(vars_file)}.expected.cfg")


def load(vars_file: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(vars_file.read_text())
    return data


GOOD = {"id": 7, "uplink": "GigabitEthernet0/0/1", "committed_mbps": 120, "peak_pct": 125}


# ---- golden files -------------------------------------------------------------------------


def test_golden_cases_are_discovered() -> None:
    assert CASES, f"no golden cases found under {GOLDEN}"
    for platform in LEASE_PLATFORMS:
        cases = [c for c in CASES if c.parent.name == platform]
        assert len(cases) >= 2, f"{platform}: fewer than 2 lease golden cases"
    assert {c.parent.name for c in CASES} <= set(LEASE_PLATFORMS)
    assert {t.stem for t in LEASE_TEMPLATE_ROOT.glob("*.j2")} == set(LEASE_PLATFORMS)


def test_no_expected_file_without_its_case() -> None:
    known = {expected_file(case) for case in CASES}
    stray = sorted(str(p) for p in GOLDEN.glob("*/*.expected.cfg") if p not in known)
    assert not stray, f"expected files without a vars file: {stray}"


@pytest.mark.parametrize("vars_file", CASES, ids=[f"{c.parent.name}/{case_name(c)}" for c in CASES])
def test_golden(vars_file: Path, update_golden: bool) -> None:
    text = render_lease(vars_file.parent.name, load(vars_file))
    expected = expected_file(vars_file)
    if update_golden:
        expected.write_text(text)
    assert expected.exists(), f"run pytest --update to create {expected.name}"
    assert text == expected.read_text()


# ---- what is rendered ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("committed", "pct", "rate", "burst"),
    [
        (120, 125, 150_000_000, 2_343_750),  # 125 ms of 150 Mbit/s
        (15, 133, 19_950_000, 311_719),  # 311718.75 rounded up
        (1, 100, 1_000_000, 15_625),
        (36_000, 100, 36_000_000_000, LEASE_MAX_BURST_BYTES),  # 562.5 MB capped
        (400, 1000, 4_000_000_000, 62_500_000),
    ],
    ids=["burstable", "fractional", "smallest", "burst-capped", "ten-times-peak"],
)
def test_police_rate_is_the_peak_rate(committed: int, pct: int, rate: int, burst: int) -> None:
    lease = {**GOOD, "committed_mbps": committed, "peak_pct": pct}
    values = validate_lease(lease)
    assert (values["rate_bps"], values["burst_bytes"]) == (rate, burst)
    assert f"police cir {rate} bc {burst} conform-action" in render_lease("ios", lease)
    junos = render_lease("junos", {**lease, "uplink": "ge-0/0/1"})
    assert f"bandwidth-limit {junos_number(rate)}\n" in junos
    assert f"burst-size-limit {junos_number(burst)}\n" in junos


def test_validated_lease_is_canonical() -> None:
    assert validate_lease(GOOD) == {
        "id": 7,
        "name": "vpop-lease-7",
        "uplink": "GigabitEthernet0/0/1",
        "rate_bps": 150_000_000,
        "burst_bytes": 2_343_750,
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [(150_000_000, "150m"), (15_625_000, "15625k"), (2_343_750, "2343750"), (40 * 10**9, "40g")],
)
def test_junos_number(value: int, text: str) -> None:
    assert junos_number(value) == text


def test_junos_unit_defaults_to_zero() -> None:
    text = render_lease("junos", {**GOOD, "uplink": "xe-1/0/0"})
    assert text.splitlines()[-1] == (
        "set interfaces xe-1/0/0 unit 0 family inet policer output vpop-lease-7"
    )


def test_one_lease_environment_built_once() -> None:
    env = lease_environment()
    assert lease_environment() is env
    assert env.undefined is jinja2.StrictUndefined
    assert env.trim_blocks and env.lstrip_blocks and env.keep_trailing_newline
    loader = env.loader
    assert isinstance(loader, jinja2.FileSystemLoader)
    assert [Path(p) for p in loader.searchpath] == [LEASE_TEMPLATE_ROOT]


def test_uplink_is_validated_as_an_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    original = validate.interface

    def spy(value: object, field: str) -> str:
        seen.append(field)
        return original(value, field)

    monkeypatch.setattr(validate, "interface", spy)
    render_lease("ios", GOOD)
    assert seen == ["lease.uplink"]


# ---- bad input ----------------------------------------------------------------------------

BAD_LEASES = {
    "uplink-newline": ({**GOOD, "uplink": "Gi0/0/1\n service-policy input evil"}, "uplink"),
    "uplink-cr": ({**GOOD, "uplink": "Gi0/0/1\rexit"}, "uplink"),
    "uplink-space": ({**GOOD, "uplink": "Gi0/0/1 extra"}, "uplink"),
    "uplink-empty": ({**GOOD, "uplink": ""}, "uplink"),
    "uplink-not-str": ({**GOOD, "uplink": 1}, "uplink"),
    "rate-bool": ({**GOOD, "committed_mbps": True}, "committed_mbps"),
    "rate-negative": ({**GOOD, "committed_mbps": -100}, "committed_mbps"),
    "rate-zero": ({**GOOD, "committed_mbps": 0}, "committed_mbps"),
    "rate-huge": ({**GOOD, "committed_mbps": 10**12}, "committed_mbps"),
    "rate-float": ({**GOOD, "committed_mbps": 120.0}, "committed_mbps"),
    "rate-str": ({**GOOD, "committed_mbps": "120"}, "committed_mbps"),
    "peak-bool": ({**GOOD, "peak_pct": False}, "peak_pct"),
    "peak-below-committed": ({**GOOD, "peak_pct": 99}, "peak_pct"),
    "peak-huge": ({**GOOD, "peak_pct": 1001}, "peak_pct"),
    "peak-rate-above-max": ({**GOOD, "committed_mbps": 40_001, "peak_pct": 100}, "peak rate"),
    "peak-rate-product-above-max": (
        {**GOOD, "committed_mbps": 20_000, "peak_pct": 250},
        "peak rate",
    ),
    "id-bool": ({**GOOD, "id": True}, r"lease\.id"),
    "id-zero": ({**GOOD, "id": 0}, r"lease\.id"),
    "id-huge": ({**GOOD, "id": 2**31}, r"lease\.id"),
    "missing-key": ({k: v for k, v in GOOD.items() if k != "peak_pct"}, "missing peak_pct"),
    "unknown-key": ({**GOOD, "rate": 1}, "unknown"),
    "not-a-mapping": ([("id", 7)], "expected a mapping"),
}


@pytest.mark.parametrize(("lease", "message"), list(BAD_LEASES.values()), ids=list(BAD_LEASES))
@pytest.mark.parametrize("platform", LEASE_PLATFORMS)
def test_bad_leases_are_refused(platform: str, lease: Any, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        render_lease(platform, lease)


def test_largest_peak_rate_is_accepted() -> None:
    lease = {**GOOD, "committed_mbps": 20_000, "peak_pct": 200}
    assert validate_lease(lease)["rate_bps"] == LEASE_MAX_PEAK_BPS
    assert "bandwidth-limit 40g\n" in render_lease("junos", {**lease, "uplink": "et-0/0/0"})


@pytest.mark.parametrize("platform", ["frr", "eos", "IOS", None], ids=str)
def test_platforms_without_a_lease_template_are_refused(platform: Any) -> None:
    with pytest.raises(BadInput, match="no lease policer template"):
        render_lease(platform, GOOD)


# ---- structure check ----------------------------------------------------------------------

SMUGGLED = {
    "newline": "Gi0/0/1\n service-policy input evil",
    "cr": "Gi0/0/1\rexit",
    "u2028": "Gi0/0/1\u2028exit",
    "space": "Gi0/0/1 extra",
    "semicolon": "ge-0/0/1;delete",
    "quote": 'ge-0/0/1"x',
}


@pytest.mark.parametrize("uplink", list(SMUGGLED.values()), ids=list(SMUGGLED))
@pytest.mark.parametrize("platform", LEASE_PLATFORMS)
def test_a_value_smuggled_past_validation_is_caught(
    monkeypatch: pytest.MonkeyPatch, platform: str, uplink: str
) -> None:
    real = render_module.validate_lease

    def no_uplink_check(lease: Any) -> dict[str, Any]:
        return {**real({**lease, "uplink": "ge-0/0/1"}), "uplink": lease["uplink"]}

    monkeypatch.setattr(render_module, "validate_lease", no_uplink_check)
    with pytest.raises(StructureError, match=f"lease/{platform}"):
        render_lease(platform, {**GOOD, "uplink": uplink})

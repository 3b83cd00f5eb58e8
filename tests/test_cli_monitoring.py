"""``vpop lease`` and ``vpop report``, run with click's CliRunner on a temporary database."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from vpop.catalogue.models import Isp
from vpop.cli import common as cli_common
from vpop.cli import leasing as cli_leasing
from vpop.cli.leasing import lease
from vpop.cli.reports import report
from vpop.core.audit import AuditEntry
from vpop.core.db import dispose_engines, session_scope
from vpop.core.migrate import upgrade
from vpop.leasing.models import Lease, UtilisationSample
from vpop.monitoring.models import QosSample
from vpop.monitoring.rollups import add_to_rollup

HOSTS_YAML = """\
rc1:
  hostname: 127.0.0.1
  groups: [frr, lab]
  data:
    uplinks:
      isp-a: {interface: isp-a, address: 198.51.100.1/30, next_hop: 198.51.100.2}
      isp-b: {interface: isp-b, address: 198.51.100.9/30, next_hop: 198.51.100.10}
"""
SCRIPT_NAME = "<script>alert(1)</script>"
CREATE = ["create", "--isp", "isp-b", "--router", "rc1", "--committed-mbps", "100"]
CREATE += ["--price-minor", "50000"]


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """VPOP_DATABASE_URL: a migrated SQLite file with isp-a and isp-b; an inventory."""
    database = f"sqlite:///{tmp_path}/cli.sqlite"
    monkeypatch.setenv("VPOP_DATABASE_URL", database)
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(HOSTS_YAML)
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", str(hosts))
    monkeypatch.setenv("VPOP_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.setenv("USER", "tester")
    monkeypatch.delenv("SUDO_USER", raising=False)
    upgrade(database)
    with session_scope(database) as session:
        session.add_all([Isp(id="isp-a", name="Alpha Net"), Isp(id="isp-b", name=SCRIPT_NAME)])
    try:
        yield database
    finally:
        dispose_engines()


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Lease ids the commands queue (the real queue is never opened)."""
    seen: list[int] = []
    monkeypatch.setattr(cli_leasing, "lease_enqueuer", lambda: seen.append)
    return seen


def run(command: click.Command, args: list[str]) -> Result:
    """Invoke a command group as `vpop <group>` would."""
    return CliRunner().invoke(command, args, catch_exceptions=False)


def one_error_line(result: Result, exit_code: int, code: str) -> str:
    """Check the result failed with one stderr line carrying ``code``; return the line."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {code}: "), lines[0]
    return lines[0]


def leases_in(url: str) -> int:
    """How many leases the database holds."""
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(Lease)) or 0)


# --- vpop lease -----------------------------------------------------------------------------


def test_lease_create_prints_the_lease_and_queues_it(url: str, queued: list[int]) -> None:
    result = run(lease, [*CREATE, "--peak-pct", "150", "--ends-at", "2099-01-01T00:00:00Z"])
    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("lease 1: isp-b on rc1 uplink isp-b, 100 Mbit/s (peak 150%)")
    assert "provisioning" in line and "2099-01-01T00:00:00+00:00" in line
    assert queued == [1]
    with session_scope(url) as session:
        created = session.get(Lease, 1)
        assert created is not None and created.committed_mbps == 100
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "lease.create"))
        assert audit.one().actor == "cli:tester"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (CREATE[:3] + CREATE[5:], "VPOP-400"),
        ([*CREATE[:-1], "lots"], "VPOP-400"),
        ([*CREATE, "--colour", "red"], "VPOP-400"),
        ([*CREATE[:-3], "0", *CREATE[-2:]], "VPOP-400"),
        (["create", "--isp", "ISP B", *CREATE[3:]], "VPOP-400"),
        ([*CREATE, "--under-pct", "90"], "VPOP-400"),
        ([*CREATE, "--ends-at", "tomorrow"], "VPOP-400-TIME"),
        ([*CREATE, "--ends-at", "2099-01-01T00:00:00"], "VPOP-400-TIME"),
        ([*CREATE, "--ends-at", "2001-01-01"], "VPOP-400"),
        ([*CREATE[:4], "rc9", *CREATE[5:]], "VPOP-404-ROUTER"),
        (["create", "--isp", "isp-c", *CREATE[3:]], "VPOP-404-UPLINK"),
    ],
    ids=[
        "missing-router",
        "price-not-a-number",
        "unknown-option",
        "zero-rate",
        "invalid-isp",
        "no-band",
        "ends-at-not-iso",
        "ends-at-naive",
        "ends-at-past",
        "unknown-router",
        "no-uplink",
    ],
)
def test_lease_create_bad_input_exits_2_with_one_line(
    url: str, queued: list[int], args: list[str], code: str
) -> None:
    one_error_line(run(lease, args), 2, code)
    assert leases_in(url) == 0
    assert queued == []


def test_a_busy_uplink_exits_2(url: str, queued: list[int]) -> None:
    assert run(lease, CREATE).exit_code == 0
    line = one_error_line(run(lease, CREATE), 2, "VPOP-409-LEASE")
    assert "has lease 1" in line
    assert leases_in(url) == 1


def test_a_queue_without_enqueue_lease_is_a_clear_error(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "vpop.jobs.queue", types.ModuleType("vpop.jobs.queue"))
    line = one_error_line(run(lease, CREATE), 1, "VPOP-CFG")
    assert "enqueue_lease" in line
    assert leases_in(url) == 0  # checked before anything is written


def test_a_queue_that_fails_after_the_write_exits_1(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(_lease_id: int) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(cli_leasing, "lease_enqueuer", lambda: down)
    result = run(lease, CREATE)
    line = one_error_line(result, 1, "VPOP-000")
    assert "lease 1 is recorded" in line and "redis is down" in line
    assert result.stdout.startswith("lease 1: ")
    assert leases_in(url) == 1


@pytest.fixture
def two_leases(url: str, queued: list[int]) -> list[int]:
    """Lease 1 (isp-b) and lease 2 (isp-a), both on rc1."""
    assert run(lease, CREATE).exit_code == 0
    other = ["create", "--isp", "isp-a", *CREATE[3:]]
    assert run(lease, other).exit_code == 0
    queued.clear()
    return [1, 2]


def test_lease_list(two_leases: list[int]) -> None:
    lines = run(lease, ["list"]).stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["lease 1", "lease 2"]
    only_a = run(lease, ["list", "--isp", "isp-a"]).stdout.splitlines()
    assert len(only_a) == 1 and "isp-a on rc1" in only_a[0]
    as_json = json.loads(run(lease, ["list", "--json"]).stdout)
    assert [(row["lease"], row["isp"], row["status"]) for row in as_json] == [
        (1, "isp-b", "provisioning"),
        (2, "isp-a", "provisioning"),
    ]
    assert run(lease, ["list", "--isp", "isp-c"]).stdout == "no leases for isp-c\n"
    one_error_line(run(lease, ["list", "--isp", "Isp C"]), 2, "VPOP-400")


def test_lease_end(url: str, two_leases: list[int], queued: list[int]) -> None:
    result = run(lease, ["end", "1"])
    assert result.exit_code == 0, result.stderr
    assert "ending" in result.stdout
    assert queued == [1]
    with session_scope(url) as session:
        ended = session.get(Lease, 1)
        assert ended is not None and ended.status == "ending"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["end", "99"], "VPOP-404-LEASE"),
        (["end", "one"], "VPOP-400"),
        (["end", str(2**64)], "VPOP-400"),
        (["end"], "VPOP-400"),
    ],
    ids=["unknown", "not-a-number", "too-large", "missing"],
)
def test_lease_end_bad_input(
    two_leases: list[int], queued: list[int], args: list[str], code: str
) -> None:
    one_error_line(run(lease, args), 2, code)
    assert queued == []


def test_an_unknown_subcommand_is_one_line(url: str) -> None:
    line = one_error_line(run(lease, ["frobnicate"]), 2, "VPOP-400")
    assert "frobnicate" in line and "--help" in line


def test_an_unmigrated_database_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VPOP_DATABASE_URL", f"sqlite:///{tmp_path}/empty.sqlite")
    try:
        line = one_error_line(run(lease, ["list"]), 1, "VPOP-CFG")
    finally:
        dispose_engines()
    assert "vpop db upgrade" in line


# --- vpop report ----------------------------------------------------------------------------

START = datetime(2025, 1, 1, tzinfo=UTC)
PERIOD = ["--from", "2025-01-01", "--to", "2025-01-02T00:00:00Z"]


@pytest.fixture
def samples(url: str) -> None:
    """isp-b (named like a script) on rc1: 20 QoS samples; a lease of isp-b with 11 rates."""
    with session_scope(url) as session:
        for k in range(20):
            at = START + timedelta(minutes=k)
            session.add(QosSample(isp_id="isp-b", router="rc1", at=at, latency_ms=float(k + 1)))
            # the rollup the poller writes beside each sample
            add_to_rollup(session, "qos:isp-b:rc1:latency_ms", at, float(k + 1))
        leased = Lease(
            isp_id="isp-b",
            router="rc1",
            uplink="isp-b",
            committed_mbps=200,
            price_minor=1,
            starts_at=START - timedelta(days=1),
        )
        session.add(leased)
        session.flush()
        for k, rate in enumerate([30, 110, 10, 90, 50, 20, 100, 70, 40, 60, 80]):
            at = START + timedelta(minutes=k)
            session.add(
                UtilisationSample(
                    lease_id=leased.id, at=at, rate_mbps=rate, utilisation_pct=rate / 2
                )
            )
            add_to_rollup(session, f"util:lease:{leased.id}", at, rate / 2)
            add_to_rollup(session, f"util_mbps:lease:{leased.id}", at, rate)


def test_report_qos_as_csv_on_stdout(samples: None) -> None:
    result = run(report, ["qos", *PERIOD])
    assert result.exit_code == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split(",")[:4] == ["isp", "isp_name", "router", "samples"]
    assert row.startswith(f"isp-b,{SCRIPT_NAME},rc1,20,10.5,1.0,20.0,19.0,")


def test_report_utilisation_as_json(samples: None) -> None:
    result = run(report, ["utilisation", *PERIOD, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert (row["samples"], row["p95_mbps"], row["p95_pct"]) == (11, 100.0, 50.0)


@pytest.mark.parametrize("kind", ["qos", "utilisation"], ids=["qos", "utilisation"])
def test_report_as_html_to_a_file(samples: None, tmp_path: Path, kind: str) -> None:
    output = tmp_path / f"{kind}.html"
    result = run(report, [kind, *PERIOD, "--format", "html", "--output", str(output)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"wrote 1 rows to {output}\n"
    page = output.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "2025-01-01T00:00:00+00:00 to 2025-01-02T00:00:00+00:00" in page


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["qos", "--from", "2025-01-02", "--to", "2025-01-01"], "VPOP-400-TIME"),
        (["qos", "--from", "2025-01-01", "--to", "2025-01-01"], "VPOP-400-TIME"),
        (["qos", "--from", "last week", "--to", "2025-01-01"], "VPOP-400-TIME"),
        (["qos", "--to", "2025-01-01"], "VPOP-400"),
        (["qos", *PERIOD, "--format", "xml"], "VPOP-400"),
        (["utilisation", *PERIOD, "--output", "/nonexistent/dir/x.csv"], "VPOP-400"),
        (["billing", *PERIOD], "VPOP-400"),
    ],
    ids=[
        "backwards",
        "empty",
        "not-iso",
        "missing-from",
        "unknown-format",
        "unwritable-output",
        "unknown-report",
    ],
)
def test_report_bad_input_exits_2_with_one_line(samples: None, args: list[str], code: str) -> None:
    line = one_error_line(run(report, args), 2, code)
    if "last week" in args:
        assert line.startswith("error: VPOP-400-TIME: --from: ")


def test_the_formats_match_the_renderer() -> None:
    from vpop.reports import service as reports

    assert cli_common.FORMATS == reports.FORMATS


def test_attaching_the_groups_costs_other_commands_no_imports() -> None:
    code = (
        "import sys, vpop.cli; "
        "print(sorted(m for m in ('sqlalchemy', 'vpop.core.db', 'vpop.reports.service', "
        "'vpop.leasing.service') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

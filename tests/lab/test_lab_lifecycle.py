"""`up` and `down` of a second lab (its own namespace prefix), crashes included."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vpop.lab.builder import Lab, lab_namespaces

pytestmark = pytest.mark.lab
PREFIX = "vpop-t-"


@pytest.fixture
def lab_dir() -> Iterator[Path]:
    """A lab directory the frr user can traverse (pytest's tmp_path is root-only)."""
    path = Path("/run") / f"vpop-test-{uuid.uuid4().hex[:8]}"
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def live_pids(pid_file: Path) -> list[int]:
    pids = []
    for line in pid_file.read_text().splitlines():
        pid = int(line.split()[0])
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            pids.append(pid)
    return pids


def test_up_is_idempotent_and_down_leaves_nothing(tmp_path: Path, lab_dir: Path) -> None:
    lab = Lab(lab_dir, prefix=PREFIX)
    try:
        lab.up(subscribers=2)
        first = lab.state()
        assert first is not None
        lab.up(subscribers=2)  # replaces the old lab
        assert len(lab_namespaces(PREFIX)) == 7
        (tmp_path / "pids").write_text((lab.dir / "pids").read_text())
    finally:
        lab.down()
    assert lab_namespaces(PREFIX) == []
    assert not lab.dir.exists()
    assert live_pids(tmp_path / "pids") == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "isp-a" not in links and "sub1" not in links


@pytest.mark.parametrize("step", ["links", "daemons"])
def test_down_cleans_up_after_up_crashed_midway(tmp_path: Path, lab_dir: Path, step: str) -> None:
    code = (
        "from pathlib import Path; from vpop.lab.builder import Lab; "
        f"Lab(Path({str(lab_dir)!r}), prefix={PREFIX!r}).up(subscribers=2)"
    )
    env = {**os.environ, "VPOP_LAB_CRASH_AT": step}
    proc = subprocess.run([sys.executable, "-c", code], env=env, timeout=60, check=False)
    assert proc.returncode == -9  # killed at the injected step
    assert lab_namespaces(PREFIX), "the crash should have left namespaces behind"
    pids_copy = (lab_dir / "pids").read_text()
    Lab(lab_dir, prefix=PREFIX).down()
    (tmp_path / "pids").write_text(pids_copy)
    assert lab_namespaces(PREFIX) == []
    assert not lab_dir.exists()
    assert live_pids(tmp_path / "pids") == []


def test_cli_lab_up_registers_the_lab_in_the_database(tmp_path: Path, lab_dir: Path) -> None:
    from sqlalchemy import select

    from vpop.catalogue.models import Isp, Line, Subscriber
    from vpop.core.db import session_scope

    url = f"sqlite:///{tmp_path / 'vpop.sqlite'}"
    env = {
        **os.environ,
        "VPOP_LAB_DIR": str(lab_dir),
        "VPOP_LAB_PREFIX": PREFIX,
        "VPOP_DATABASE_URL": url,
    }
    run = [sys.executable, "-m", "vpop.cli", "lab"]
    try:
        up = subprocess.run(
            [*run, "up", "--subscribers", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert up.returncode == 0, up.stderr
        with session_scope(url) as session:
            assert sorted(session.scalars(select(Isp.id))) == ["isp-a", "isp-b", "isp-c"]
            assert sorted(session.scalars(select(Subscriber.id))) == ["sub1", "sub2"]
            lines = {ln.subscriber_id: ln for ln in session.scalars(select(Line))}
            assert (lines["sub1"].router, lines["sub1"].prefix) == ("rc1", "192.0.2.2/32")
            assert (lines["sub2"].router, lines["sub2"].calling_number) == ("rc2", "+31205550002")
    finally:
        down = subprocess.run(
            [*run, "down"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert down.returncode == 0
    assert lab_namespaces(PREFIX) == []

"""In the lab: a router whose host key is replaced (its sshd restarted with a new key) is
refused with both fingerprints and nothing is pushed; after `vpop router trust` it works."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tasks.hostkeys import fingerprint, known_host_name, read_known_hosts
from tests.lab.helpers import curl, pbrd_config
from tests.lab.helpers import run_vpop as vpop
from vpop.core.audit import AuditEntry
from vpop.core.db import dispose_engines, session_scope
from vpop.lab.builder import Lab
from vpop.lab.processes import keypair
from vpop.lab.registry import register_lab

pytestmark = pytest.mark.lab


def rekey(instance: Lab, router: str, private: bytes, public: bytes) -> None:
    """Give the router's sshd another host key: restart it by its recorded PID."""
    instance.host_key_file(router).write_bytes(private)
    instance.host_key_file(router, public=True).write_bytes(public + b"\n")
    instance.cut_management(router)
    instance.restore_management(router)


def test_a_rekeyed_router_is_refused_until_trusted(lab: dict[str, Any], tmp_path: Path) -> None:
    instance = Lab(Path(lab["lab_dir"]))
    db_url = f"sqlite:///{tmp_path / 'vpop.sqlite'}"
    register_lab(lab, db_url)
    env = {
        **os.environ,
        "VPOP_DATABASE_URL": db_url,
        "VPOP_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.sqlite'}",
        "VPOP_STATE_DIR": str(tmp_path / "state"),
    }
    env.pop("VPOP_SERVER_URL", None)
    converged = vpop(env, "reconcile")  # earlier modules may have left other selections
    assert converged.returncode == 0, converged.stdout + converged.stderr

    router = "rc2"
    sub = next(line["subscriber"] for line in lab["lines"] if line["router"] == router)
    target = next(i for i in ("isp-b", "isp-c") if i != curl(sub))
    port = lab["nodes"][router]["ssh"]["port"]
    known_hosts = Path(lab["lab_dir"]) / "known_hosts"
    [(_, old)] = read_known_hosts(known_hosts, known_host_name("127.0.0.1", port))
    old_private = instance.host_key_file(router).read_bytes()
    old_public = instance.host_key_file(router, public=True).read_bytes().strip()
    assert fingerprint(base64.b64decode(old_public.split()[1])) == old

    private, public = keypair()
    new = fingerprint(base64.b64decode(public.split()[1]))
    before_config, before_isp = pbrd_config(router, lab["lab_dir"]), curl(sub)
    trusted = False
    rekey(instance, router, private, public)
    try:
        refused = vpop(env, "select", sub, target)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "VPOP-HOSTKEY" in refused.stderr and router in refused.stderr
        assert old in refused.stderr and new in refused.stderr
        assert "nothing was sent" in refused.stderr
        assert f"router {router} was refused (host key)" in refused.stderr
        assert pbrd_config(router, lab["lab_dir"]) == before_config
        assert curl(sub) == before_isp

        trust = vpop(env, "router", "trust", router, "--yes")
        assert trust.returncode == 0, trust.stdout + trust.stderr
        assert f"CHANGED: pinned now {old}, offered {new}" in trust.stdout
        trusted = True
        pinned = read_known_hosts(known_hosts, known_host_name("127.0.0.1", port))
        assert pinned == [("ssh-ed25519", new)]
        with session_scope(db_url) as session:
            entry = session.scalars(
                select(AuditEntry).where(AuditEntry.action == "router.trust")
            ).one()
            assert (entry.object, entry.details["old"], entry.details["new"]) == (
                f"router:{router}",
                [old],
                new,
            )

        pushed = vpop(env, "select", sub, target)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        assert curl(sub) == target
    finally:
        dispose_engines()
        # leave the lab as the other modules know it: its own key back (the lab's pins of
        # the router's other login, its vtysh port, are of that key)
        rekey(instance, router, old_private, old_public)
        if trusted:
            back = vpop(env, "router", "trust", router, "--yes")
            assert back.returncode == 0, back.stdout + back.stderr

"""A lab router's real health, and bringing a router back.

A router is ``up`` when its namespace exists, its sshd runs and answers on its ports (the
management login's and the CLI login's) with an SSH identification line, and its FRR daemons
(zebra, staticd, pbrd) run; otherwise it is ``degraded`` (or ``missing`` without its
namespace). Processes are checked by the PIDs the lab recorded (with their start times, so a
recycled PID or a zombie counts as dead), never by name.

:func:`restore_router` restarts what is dead: the FRR daemons (all three when zebra died, since
its clients must register with the new one), re-applying the router's startup configuration,
and sshd on its old port. What vpop pushed into a restarted daemon (pbr-maps, nexthop-groups)
is gone with it: ``vpop reconcile ROUTER`` pushes the selections again.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vpop.core.errors import LabError, NotFound
from vpop.lab.processes import (
    alive,
    kill_pid,
    run_command,
    ssh_answers,
    wait_until,
)

if TYPE_CHECKING:
    from vpop.lab.builder import Lab

FRR_DAEMONS = ("zebra", "staticd", "pbrd")


FRR_BIN = Path("/usr/lib/frr")


IP = "/usr/sbin/ip"


def daemon_command(namespace: str, rdir: Path, daemon: str) -> list[str]:
    """The command that runs one FRR daemon of a router in its namespace, in the foreground.

    Args:
        namespace: The router's network namespace.
        rdir: The router's directory (vty sockets, zserv socket, pid files, logs).
        daemon: ``zebra``, ``staticd`` or ``pbrd``.
    """
    return [
        IP,
        "netns",
        "exec",
        namespace,
        str(FRR_BIN / daemon),
        "--vty_socket",
        str(rdir),
        "-z",
        str(rdir / "zserv.api"),
        "-i",
        str(rdir / f"{daemon}.pid"),
        "-f",
        "/dev/null",
        "-P",
        "0",
        "--log",
        f"file:{rdir / (daemon + '.log')}",
    ]


def recorded_pids(pid_file: Path) -> dict[str, tuple[int, str | None]]:
    """The newest recorded PID and start time of each lab process, by what it is.

    Names are ``<router>/<daemon>``, ``sshd <router>`` and ``labhost <isp>``.
    """
    found: dict[str, tuple[int, str | None]] = {}
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[0].isdigit():
            found[parts[2]] = (int(parts[0]), None if parts[1] == "-" else parts[1])
    return found


def _process(pids: dict[str, tuple[int, str | None]], what: str) -> dict[str, Any]:
    pid, start = pids.get(what, (0, None))
    return {"pid": pid or None, "alive": bool(pid) and alive(pid, start)}


def router_health(
    lab_dir: Path, router: str, port: int, cli_port: int | None = None
) -> dict[str, Any]:
    """The router's sshd and FRR daemons as they are now.

    Args:
        lab_dir: The lab's directory (its ``pids`` file).
        router: The router's name.
        port: Its sshd's management port on 127.0.0.1.
        cli_port: Its sshd's CLI (vtysh) port on 127.0.0.1, if it has one.

    Returns:
        ``{"state": "up" | "degraded", "processes": {name: {"pid", "alive"}}, "problems":
        [...]}``; ``processes["sshd"]`` also has ``answers`` (an SSH banner on ``port``, and
        on ``cli_port`` when given).
    """
    pids = recorded_pids(lab_dir / "pids")
    processes = {"sshd": _process(pids, f"sshd {router}")}
    silent = [
        p
        for p in (port, cli_port)
        if p is not None and not (processes["sshd"]["alive"] and ssh_answers(p))
    ]
    processes["sshd"]["answers"] = processes["sshd"]["alive"] and not silent
    for daemon in FRR_DAEMONS:
        processes[daemon] = _process(pids, f"{router}/{daemon}")
    problems = [
        f"{name} dead" + (f" (pid {proc['pid']})" if proc["pid"] else "")
        for name, proc in processes.items()
        if not proc["alive"]
    ]
    if processes["sshd"]["alive"] and not processes["sshd"]["answers"]:
        problems.append(f"sshd does not answer on port {', '.join(map(str, silent))}")
    return {"state": "degraded" if problems else "up", "processes": processes, "problems": problems}


def lab_status(lab: Lab, present: list[str]) -> dict[str, Any]:
    """What is up: nodes (routers with their real health), namespaces, management ports.

    Args:
        lab: The lab.
        present: The lab's namespaces that exist now.
    """
    state = lab.state()
    if state is None:
        return {"up": False, "namespaces": present, "nodes": {}}
    nodes = state["nodes"]
    for name, node in nodes.items():
        node["present"] = node["namespace"] in present
        node["state"] = "up" if node["present"] else "missing"
        if node["kind"] == "router":
            cli_port = node["cli"]["port"] if "cli" in node else None
            health = router_health(lab.dir, name, node["ssh"]["port"], cli_port)
            node["processes"] = health["processes"]
            node["problems"] = health["problems"]
            if node["present"]:
                node["state"] = health["state"]
    return {
        "up": all(n["state"] == "up" for n in nodes.values()),
        "lab_dir": state["lab_dir"],
        "subscribers": state["subscribers"],
        "routers": state.get("routers", sum(n["kind"] == "router" for n in nodes.values())),
        "nodes": nodes,
        "namespaces": present,
        "inventory": str(lab.dir / "hosts.yaml"),
    }


def restore_router(lab: Lab, router: str) -> list[str]:
    """Restart what is dead on a lab router (FRR daemons, sshd) and wait until it answers.

    Args:
        lab: The lab.
        router: The router's name.

    Returns:
        What was restarted (``zebra``, ``staticd``, ``pbrd``, ``sshd``), in order; empty when
        the router was up.

    Raises:
        LabError: no lab is up, the router's namespace is gone (``vpop lab up`` again), or a
            restarted process did not come up.
        NotFound: the lab has no such router.
    """
    state = lab.state()
    if state is None:
        raise LabError("no lab is up; run `vpop lab up` first")
    node = state["nodes"].get(router)
    if node is None or node.get("kind") != "router":
        routers = ", ".join(n for n, v in state["nodes"].items() if v.get("kind") == "router")
        raise NotFound(
            f"unknown lab router {router!r}; routers are: {routers}", code="VPOP-404-ROUTER"
        )
    namespaces = run_command([IP, "netns", "list"]).split()
    if node["namespace"] not in namespaces:
        raise LabError(f"{router}'s namespace is gone; rebuild the lab with `vpop lab up`")
    port = node["ssh"]["port"]
    health = router_health(lab.dir, router, port, node["cli"]["port"] if "cli" in node else None)
    pids = recorded_pids(lab.dir / "pids")
    dead = [d for d in FRR_DAEMONS if not health["processes"][d]["alive"]]
    if "zebra" in dead:
        dead = list(FRR_DAEMONS)  # staticd and pbrd must register with the new zebra
    restarted = _restart_daemons(lab, router, node["namespace"], dead, pids)
    sshd = health["processes"]["sshd"]
    if not sshd["answers"]:
        if sshd["alive"]:  # running but deaf (stopped, wedged): replace it
            kill_pid(*pids[f"sshd {router}"])
        lab.restore_management(router)
        if not ssh_answers(port):
            raise LabError(f"{router}'s sshd listens on port {port} but sends no SSH banner")
        restarted.append("sshd")
    return restarted


def _restart_daemons(
    lab: Lab,
    router: str,
    namespace: str,
    daemons: list[str],
    pids: dict[str, tuple[int, str | None]],
) -> list[str]:
    """Start ``daemons`` (in FRR's order) again, then re-apply the startup configuration."""
    rdir = lab.dir / router
    procs: list[tuple[str, int]] = []
    for daemon in daemons:
        what = f"{router}/{daemon}"
        if what in pids:
            kill_pid(*pids[what])
        for stale in (rdir / f"{daemon}.vty", rdir / f"{daemon}.pid"):
            stale.unlink(missing_ok=True)
        if daemon == "zebra":
            (rdir / "zserv.api").unlink(missing_ok=True)
        else:
            wait_until((rdir / "zserv.api").exists, f"{router}'s zebra socket", procs)
        pid = lab._spawn(daemon_command(namespace, rdir, daemon), what, rdir / f"{daemon}.out")
        procs.append((what, pid))
        wait_until((rdir / f"{daemon}.vty").exists, f"{what}'s vty socket", procs)
    if not daemons:
        return []

    def ready() -> bool:
        with contextlib.suppress(LabError):
            lab._vtysh(router, "-f", str(rdir / "frr.conf"))
            clients = lab._vtysh(router, "-d", "zebra", "-c", "show zebra client")
            if "Client: static" in clients and "Client: pbr" in clients:
                return bool(run_command([IP, "-n", namespace, "route", "show", "default"]).strip())
        return False

    wait_until(ready, f"{router}'s daemons to register and its default route", procs, 0.2)
    return list(daemons)

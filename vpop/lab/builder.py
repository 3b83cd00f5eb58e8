"""The namespace lab: real FRR routers, ISP hosts and subscriber hosts on one machine.

Each node is a Linux network namespace ``vpop-<node>``. Routers (``rc1`` .. ``rcN``, 2 to 8)
run zebra, staticd and pbrd in their namespace and are managed over real SSH at
``127.0.0.1:<port>``: one ``sshd`` per router in the root namespace whose forced command
enters the router's namespace, so a session there has the router's ``vtysh``, ``nft`` and
``tc`` (as on Cumulus or VyOS). The same sshd's second port is the router's CLI login, which
lands in ``vtysh`` (:mod:`vpop.lab.login`).

Every process the lab starts is recorded by PID (with its start time, so a recycled PID is
never killed) in ``<lab_dir>/pids`` before anything else happens, and ``down`` also kills
whatever still runs inside a ``vpop-*`` namespace (``ip netns pids``), so a crashed ``up``
or a killed test leaves nothing that ``down`` cannot find.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tasks.hostkeys import known_host_name
from vpop.core.errors import LabError
from vpop.core.settings import child_environment, load_settings
from vpop.lab.health import FRR_DAEMONS, IP, daemon_command, lab_status, restore_router
from vpop.lab.inventory import write_inventory
from vpop.lab.login import host_key_file, sshd_config_file, write_logins
from vpop.lab.processes import (
    checkpoint,
    children_of,
    free_port,
    keypair,
    kill_pid,
    listening,
    run_command,
    start_time,
    wait_until,
)
from vpop.lab.shop import config_path as shop_config_path
from vpop.lab.topology import (
    DEFAULT_ISP,
    DEFAULT_ROUTERS,
    NAMESPACE_PREFIX,
    PORTAL_ADDRESS,
    SERVICE_ADDRESS,
    Topology,
    build_topology,
    node_pattern,
)
from vpop.network.service import write_known_hosts

SSHD = Path("/usr/sbin/sshd")


def lab_namespaces(prefix: str = NAMESPACE_PREFIX) -> list[str]:
    """Every network namespace a lab with ``prefix`` may have created (``vpop-rc1``, ...)."""
    out = run_command([IP, "netns", "list"])
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    pattern = node_pattern(prefix)
    return sorted(n for n in names if pattern.fullmatch(n))


def _inherited_fds() -> list[int]:
    """This process's descriptors above 2 that a spawned child would inherit."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        number = int(name)
        if number > 2:
            try:
                if os.get_inheritable(number):
                    found.append(number)
            except OSError:  # the listing's own descriptor, closed by now
                continue
    return found


class Lab:
    """One lab on this machine, its state kept under ``lab_dir``."""

    def __init__(self, lab_dir: Path | None = None, prefix: str | None = None) -> None:
        self.dir = lab_dir or load_settings().lab_dir
        # VPOP_LAB_PREFIX lets a second lab (its own VPOP_LAB_DIR) run beside the default one
        self.prefix = prefix or load_settings().lab_prefix or NAMESPACE_PREFIX
        self.pid_file = self.dir / "pids"
        self.state_file = self.dir / "state.json"

    # ---- bookkeeping -------------------------------------------------------------------
    def _record(self, pid: int, what: str) -> None:
        with self.pid_file.open("a") as fh:
            fh.write(f"{pid} {start_time(pid) or '-'} {what}\n")

    def _spawn(self, args: Sequence[str], what: str, log: Path) -> int:
        """Start a lab process in its own session; it outlives this Python process.

        ``posix_spawn`` rather than ``Popen``: the process is meant to outlive this object,
        and its PID is recorded at once so that ``down`` can always find it.
        """
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            pid = os.posix_spawn(
                args[0],
                list(args),
                # the child's own environment (PATH, the lab's VPOP_* variables), not settings
                child_environment(),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, fd, 1),
                    (os.POSIX_SPAWN_DUP2, fd, 2),
                    # nothing else this process inherited (a caller's `flock` descriptor would
                    # hold that lock for as long as the lab runs)
                    *((os.POSIX_SPAWN_CLOSE, other) for other in _inherited_fds()),
                ],
                setsid=True,
            )
        finally:
            os.close(fd)
        self._record(pid, what)
        return pid

    def state(self) -> dict[str, Any] | None:
        """The state written by ``up``, or None when no lab is up."""
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return data

    # ---- down --------------------------------------------------------------------------
    def down(self) -> None:
        """Remove everything a lab started: processes, namespaces, links, files."""
        if self.pid_file.exists():
            for line in self.pid_file.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0].isdigit():
                    kill_pid(int(parts[0]), None if parts[1] == "-" else parts[1])
        for ns in lab_namespaces(self.prefix):
            pids = subprocess.run(
                [IP, "netns", "pids", ns], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:
                if pid.isdigit():
                    kill_pid(int(pid), start_time(int(pid)))
            # deleting the namespace destroys its veths and their peers
            subprocess.run([IP, "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- up ----------------------------------------------------------------------------
    def up(self, subscribers: int = 4, routers: int = DEFAULT_ROUTERS) -> dict[str, Any]:
        """Build a fresh lab of ``routers`` routers (removing any old one first) and return
        its state.

        Raises:
            BadInput: a count out of range (subscribers 1..64, routers 2..8).
            LabError: a step failed; what was built is removed again.
        """
        topo = build_topology(subscribers, self.prefix, routers)
        self.down()
        started = time.monotonic()
        try:
            state = self._build(topo)
        except BaseException:
            self.down()
            raise
        state["up_seconds"] = round(time.monotonic() - started, 3)
        self.state_file.write_text(json.dumps(state, indent=2))
        return state

    def _build(self, topo: Topology) -> dict[str, Any]:
        self.dir.mkdir(parents=True, exist_ok=True)
        for parent in self.dir.resolve().parents:
            if not parent.stat().st_mode & 0o001:
                raise LabError(f"{parent} is not searchable by the frr user; use another lab dir")
        os.chmod(self.dir, 0o755)
        self.pid_file.touch()
        batch = [f"netns add {topo.namespace(n)}" for n in topo.nodes]
        for link in topo.links:
            batch.append(
                f"link add {link.a_ifname} netns {topo.namespace(link.a)} type veth "
                f"peer name {link.b_ifname} netns {topo.namespace(link.b)}"
            )
        run_command([IP, "-batch", "-"], stdin="\n".join(batch) + "\n")
        checkpoint("links")
        per_node: dict[str, list[str]] = {n: ["link set lo up"] for n in topo.nodes}
        for link in topo.links:
            for node, ifname, addr in (
                (link.a, link.a_ifname, link.a_address),
                (link.b, link.b_ifname, link.b_address),
            ):
                per_node[node] += [f"addr add {addr} dev {ifname}", f"link set {ifname} up"]
        for line in topo.lines:
            per_node[line.subscriber].append(f"route add default via {line.gateway.split('/')[0]}")
        for router in topo.routers:
            per_node[router].append(f"addr add {PORTAL_ADDRESS}/32 dev lo")
        for isp in topo.isps:
            per_node[isp].append(f"addr add {SERVICE_ADDRESS}/32 dev lo")
            for line in topo.lines:
                uplink = next(u for u in topo.uplinks if u.isp == isp and u.router == line.router)
                gw = uplink.address.split("/")[0]
                per_node[isp].append(f"route add {line.prefix} via {gw}")
        for node, cmds in per_node.items():
            run_command(
                [IP, "-n", topo.namespace(node), "-batch", "-"], stdin="\n".join(cmds) + "\n"
            )

        client_key, client_pub = keypair()
        (self.dir / "id_ed25519").write_bytes(client_key)
        os.chmod(self.dir / "id_ed25519", 0o600)
        (self.dir / "authorized_keys").write_bytes(client_pub + b"\n")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)

        procs: list[tuple[str, int]] = []
        ports: dict[str, int] = {}
        cli_ports: dict[str, int] = {}
        for router in topo.routers:
            ports[router] = free_port()
            cli_ports[router] = free_port()
            while cli_ports[router] == ports[router]:
                cli_ports[router] = free_port()
            procs += self._start_router(topo, router, ports[router], cli_ports[router])
        # vpop logs in only where the host key is pinned: the lab pins its routers' own, for
        # the management and the CLI port alike (one sshd, one host key)
        write_known_hosts(
            self.dir / "known_hosts",
            [
                f"{known_host_name('127.0.0.1', port)} {pub} vpop-lab:{router}{what}\n"
                for router in topo.routers
                for pub in [self.host_key_file(router, public=True).read_text().strip()]
                for port, what in ((ports[router], ""), (cli_ports[router], ":cli"))
            ],
        )
        for isp in topo.isps:
            delay_file = self.dir / f"{isp}.delay_ms"
            procs.append(
                (
                    isp,
                    self._spawn(
                        [
                            # in the root namespace, its sockets in the ISP's (vpop.lab.host):
                            # the shop reaches vpop's API on 127.0.0.1 directly
                            sys.executable,
                            "-m",
                            "vpop.lab.host",
                            "--id",
                            isp,
                            "--address",
                            SERVICE_ADDRESS,
                            "--netns",
                            topo.namespace(isp),
                            "--shop-config",
                            str(shop_config_path(self.dir, isp)),
                            "--delay-file",
                            str(delay_file),
                            "--ready-file",
                            str(self.dir / f"{isp}.ready"),
                        ],
                        f"labhost {isp}",
                        self.dir / f"{isp}.log",
                    ),
                )
            )
        checkpoint("daemons")
        self._wait_ready(topo, {**ports, **{f"{r} cli": p for r, p in cli_ports.items()}}, procs)
        for router in topo.routers:
            self._vtysh(router, "-f", str(self.dir / router / "frr.conf"))
        self._wait_routes(topo)
        state = {
            "lab_dir": str(self.dir),
            "prefix": self.prefix,
            "subscribers": len(topo.subscribers),
            "routers": len(topo.routers),
            "nodes": {
                n: {
                    "namespace": topo.namespace(n),
                    "kind": "router"
                    if n in topo.routers
                    else "isp"
                    if n in topo.isps
                    else "subscriber",
                    **(
                        {
                            "ssh": {"host": "127.0.0.1", "port": ports[n]},
                            "cli": {"host": "127.0.0.1", "port": cli_ports[n], "username": "root"},
                        }
                        if n in ports
                        else {}
                    ),
                }
                for n in topo.nodes
            },
            "links": [asdict(link) for link in topo.links],
            "lines": [asdict(line) for line in topo.lines],
            "uplinks": [asdict(u) for u in topo.uplinks],
            "default_isp": DEFAULT_ISP,
        }
        write_inventory(self.dir / "hosts.yaml", topo, ports, self.dir / "known_hosts")
        return state

    def _start_router(
        self, topo: Topology, router: str, port: int, cli_port: int
    ) -> list[tuple[str, int]]:
        rdir = self.dir / router
        rdir.mkdir()
        shutil.chown(rdir, "frr", "frr")
        default = next(u for u in topo.uplinks if u.router == router and u.isp == DEFAULT_ISP)
        (rdir / "frr.conf").write_text(
            f"frr defaults traditional\nhostname {router}\nip forwarding\n"
            f"ip route 0.0.0.0/0 {default.next_hop} {default.interface}\n"
        )
        ns = topo.namespace(router)
        run_command(
            [
                IP,
                "netns",
                "exec",
                ns,
                "sh",
                "-c",
                "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 "
                "net.ipv4.conf.default.rp_filter=0 && "
                "for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done",
            ]
        )
        procs: list[tuple[str, int]] = []
        for daemon in FRR_DAEMONS:
            if daemon != "zebra":
                # a client that finds no zserv socket retries only after 10 s
                self._wait_path(rdir / "zserv.api", procs)
            procs.append(
                (
                    f"{router}/{daemon}",
                    self._spawn(
                        daemon_command(ns, rdir, daemon),
                        f"{router}/{daemon}",
                        rdir / f"{daemon}.out",
                    ),
                )
            )
        write_logins(self.dir, router, ns, port, cli_port)
        procs.append((f"{router}/sshd", self._start_sshd(router)))
        return procs

    def host_key_file(self, router: str, *, public: bool = False) -> Path:
        """The private (or ``public``) host key file of ``router``'s sshd."""
        return host_key_file(self.dir, router, public=public)

    def _start_sshd(self, router: str) -> int:
        cfg = sshd_config_file(self.dir, router)
        pid = self._spawn(
            [str(SSHD), "-D", "-e", "-f", str(cfg)],
            f"sshd {router}",
            self.dir / f"sshd-{router}.log",
        )
        (self.dir / f"sshd-{router}.spawned").write_text(str(pid))
        return pid

    # ---- faults, for tests and drills ------------------------------------------------
    def cut_management(self, router: str) -> None:
        """Kill the router's sshd and every session it serves: the router becomes unreachable.

        Sessions are found as the listener's child processes (by PID), never by name.
        """
        pid = int((self.dir / f"sshd-{router}.spawned").read_text())
        start = start_time(pid)
        children = children_of(pid)
        kill_pid(pid, start)
        for child in children:
            kill_pid(child, start_time(child))

    def restore_management(self, router: str) -> None:
        """Start the router's sshd again on the same port; wait (bounded) until it listens."""
        pid = self._start_sshd(router)
        state = self.state()
        assert state is not None
        node = state["nodes"][router]
        for port in (node["ssh"]["port"], *([node["cli"]["port"]] if "cli" in node else [])):
            wait_until(
                functools.partial(listening, port), f"{router}'s sshd", [(f"{router}/sshd", pid)]
            )

    def set_fault(self, router: str, fault: str | None) -> None:
        """Arm (or clear) a fault the lab's drill agent (:mod:`vpop.lab.drill_agent`) acts on:
        ``cut-after:N`` kills the session after the N-th configuration command of a push."""
        path = self.dir / "faults" / router
        if fault is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(exist_ok=True)
        path.write_text(fault)

    def set_isp_delay(self, isp: str, delay_ms: float) -> None:
        """Delay the ISP host's UDP echo replies (the probe target) by ``delay_ms``."""
        (self.dir / f"{isp}.delay_ms").write_text(f"{delay_ms}\n")

    def _wait_ready(
        self,
        topo: Topology,
        ports: dict[str, int],
        procs: list[tuple[str, int]],
    ) -> None:
        """Wait (bounded) for every daemon's socket; fail fast if a process died."""
        pending: set[str] = set()
        for router in topo.routers:
            pending |= {str(self.dir / router / f"{d}.vty") for d in FRR_DAEMONS}
        pending |= {str(self.dir / f"{isp}.ready") for isp in topo.isps}
        for path in sorted(pending):
            wait_until(Path(path).exists, path, procs)
        for router, port in ports.items():
            wait_until(functools.partial(listening, port), f"{router}'s sshd", procs)
        self._wait_clients(topo)

    def _wait_path(self, path: Path, procs: list[tuple[str, int]]) -> None:
        wait_until(path.exists, str(path), procs, interval=0.002)

    def _wait_routes(self, topo: Topology) -> None:
        """Wait (bounded) until each router's default route is in its kernel table.

        staticd drops a route it was given before zebra told it about interfaces, so the
        startup config is re-applied once if the route has not appeared.
        """
        for router in topo.routers:
            ns = topo.namespace(router)
            started = time.monotonic()
            reapplied = False

            def installed(ns: str = ns, router: str = router, started: float = started) -> bool:
                nonlocal reapplied
                if run_command([IP, "-n", ns, "route", "show", "default"]).strip():
                    return True
                if not reapplied and time.monotonic() - started > 0.5:
                    self._vtysh(router, "-f", str(self.dir / router / "frr.conf"))
                    reapplied = True
                return False

            wait_until(installed, f"{router}'s default route")

    def _wait_clients(self, topo: Topology) -> None:
        """Wait (bounded) until staticd and pbrd are registered with each router's zebra."""
        for router in topo.routers:

            def registered(router: str = router) -> bool:
                out = self._vtysh(router, "-d", "zebra", "-c", "show zebra client")
                return "Client: static" in out and "Client: pbr" in out

            wait_until(registered, f"{router}'s staticd and pbrd to reach zebra")

    def _vtysh(self, router: str, *args: str) -> str:
        return run_command(
            [
                IP,
                "netns",
                "exec",
                self.prefix + router,
                "/usr/bin/vtysh",
                "--vty_socket",
                str(self.dir / router),
                *args,
            ]
        )

    # ---- inspection --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What is up: nodes (routers with their sshd and daemons as they really are),
        namespaces, management ports, and stray namespaces (:func:`health.lab_status`)."""
        return lab_status(self, lab_namespaces(self.prefix))

    def restore(self, router: str) -> list[str]:
        """Restart what is dead on ``router`` (:func:`health.restore_router`); what restarted."""
        return restore_router(self, router)

    def exec(self, node: str, command: Sequence[str]) -> int:
        """Run ``command`` inside ``node``'s namespace, with the terminal; return its code."""
        state = self.state()
        if state is None:
            raise LabError("no lab is up; run `vpop lab up` first")
        if node not in state["nodes"]:
            raise LabError(f"unknown lab node {node!r}; nodes are: {', '.join(state['nodes'])}")
        # the command's own environment (PATH, locale, terminal), not settings
        env = child_environment()
        if state["nodes"][node]["kind"] == "router":
            env["PATH"] = f"{self.dir / 'bin' / node}:{env.get('PATH', '')}"
        return subprocess.run(
            [IP, "netns", "exec", state["nodes"][node]["namespace"], *command],
            check=False,
            env=env,
        ).returncode

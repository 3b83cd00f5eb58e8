"""One selection's change made by Ansible, against vpop making it, on the namespace lab.

The change is what ``vpop select sub1 isp-b`` does on lab router rc1 (the bench prints its
dry-run diff first): in pbrd's configuration, the ``set nexthop-group vpop-<isp>`` line of
``pbr-map vpop-sub1 seq 10``. Every run toggles sub1 between isp-b and isp-a, so each one
really changes the router. The peers, ``--runs`` times each, interleaved (their order rotates
every round), all in this one run:

(a) ansible: ``ansible-playbook bench/ansible/select.yml`` (``cisco.ios.ios_config`` over
    ``ansible.netcommon.network_cli``, ``ansible_network_os=cisco.ios.ios``) against rc1's CLI
    login, which lands in vtysh as a real router's CLI does: the whole process;
(b) ``vpop select sub1 ISP`` as a whole process in server mode (``VPOP_SERVER_URL`` and
    ``VPOP_API_TOKEN_FILE``, a noc token in a 0600 file) against ``vpop serve``, which the
    bench starts and stops by its PID;
(c) ``vpop select sub1 ISP`` as a whole process in-process mode (no ``VPOP_SERVER_URL``);
(d) the warm server from this process: ``POST /api/v1/selections`` then
    ``GET /api/v1/orders/{id}`` with ``Prefer: wait=30`` (a server that does not apply the
    preference, i.e. answers without ``Preference-Applied``, is polled every 0.1 s instead;
    the bench says which it saw).

After every run, each peer's, rc1's running configuration is read over the management login
(OpenSSH, host key checked against the lab's known_hosts) and must show sub1 on the new ISP,
so no peer can be timed doing nothing. Printed: p50/min/max per peer and the p50 ratios
ansible/(b), ansible/(c), ansible/(d); the issue's target is ansible/(b) >= 10.

Ansible is no dependency of vpop: on first run the bench creates its own venv,
``var/bench-ansible-venv``, with pinned ``ansible`` (which ships the ``cisco.ios`` and
``ansible.netcommon`` collections; no Galaxy needed) and ``ansible-core``, ``ansible-pylibssh``
and ``paramiko``, from PyPI; a changed pin list rebuilds it. SSH: paramiko by default, with
the router's host key checked against a copy of the lab's known_hosts (paramiko reads
``$HOME/.ssh/known_hosts``; the bench gives Ansible a ``HOME`` of its own); ``--ssh libssh``
(ansible-pylibssh) runs without host key checking, since libssh reads known hosts only from
the passwd entry's ``~/.ssh`` (the bench writes nothing there). docs/bench.md has more.

Run (root, lab free): .venv/bin/python bench/ansible.py [--runs 7] [--ssh paramiko|libssh]
It rebuilds the default lab and removes it at the end (do not run it beside the test suite);
its database, token, server log and Ansible's files live in a temporary directory.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(tempfile.mkdtemp(prefix="vpop-bench-ansible-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)  # nothing left behind
os.environ["VPOP_DATABASE_URL"] = f"sqlite:///{WORK / 'vpop.sqlite'}"
os.environ["VPOP_QUEUE_URL"] = f"sqlite:///{WORK / 'queue.sqlite'}"
for _name in ("VPOP_SERVER_URL", "VPOP_API_TOKEN_FILE"):
    os.environ.pop(_name, None)  # (b) sets them; everything else runs without a server

from tasks.frr_config import parse_blocks  # noqa: E402
from vpop.core.settings import load_settings  # noqa: E402
from vpop.lab.service import Lab, register_lab  # noqa: E402

VPOP = ROOT / ".venv" / "bin" / "vpop"
PLAYBOOK_DIR = ROOT / "bench" / "ansible"
VENV = ROOT / "var" / "bench-ansible-venv"
# newest releases that install on this Python (3.11): ansible 12 is built on ansible-core 2.19
PINS = ("ansible==12.3.0", "ansible-core==2.19.14", "ansible-pylibssh==1.4.0", "paramiko==5.1.0")
SUBSCRIBER, ROUTER, ISPS = "sub1", "rc1", ("isp-b", "isp-a")
FINAL = {"DONE_SUCCESS", "DONE_FAILED", "RECONCILED", "UNKNOWN", "DECLINED", "EXPIRED"}
PEERS = {
    "a": "(a) ansible-playbook, whole process",
    "b": "(b) vpop select, whole process, server mode",
    "c": "(c) vpop select, whole process, in-process",
    "d": "(d) warm server: POST + long-poll GET",
}


def ensure_ansible(venv: Path = VENV) -> Path:
    """The ``bin`` directory of the bench's Ansible venv, created (or rebuilt) when needed."""
    marker = venv / "vpop-pins.txt"
    wanted = "\n".join(PINS) + "\n"
    if (
        marker.is_file()
        and marker.read_text() == wanted
        and (venv / "bin/ansible-playbook").exists()
    ):
        return venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)
    print(f"installing {', '.join(PINS)} into {venv} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin/pip"), "install", "--quiet", "--disable-pip-version-check", *PINS],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(PINS)} failed:\n{pip.stdout}{pip.stderr}")
    marker.write_text(wanted)
    return venv / "bin"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Router:
    """rc1's running configuration, read over its management login (as vpop logs in)."""

    def __init__(self, lab_dir: Path, port: int) -> None:
        self.argv = [
            "ssh",
            "-q",
            "-p",
            str(port),
            "-i",
            str(lab_dir / "id_ed25519"),
            "-o",
            f"UserKnownHostsFile={lab_dir / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "root@127.0.0.1",
            "vtysh -c 'show running-config'",
        ]

    def policy(self) -> list[str]:
        """The body of ``pbr-map vpop-sub1 seq 10`` as the router prints it."""
        text = subprocess.run(self.argv, capture_output=True, text=True, check=True).stdout
        for block in parse_blocks(text):
            if block.header == f"pbr-map vpop-{SUBSCRIBER} seq 10":
                return list(block.body)
        raise RuntimeError(f"{ROUTER} has no pbr-map vpop-{SUBSCRIBER}:\n{text}")

    def isp(self) -> str:
        """The ISP sub1's traffic leaves through on the router now."""
        prefix = "set nexthop-group vpop-"
        return next(line[len(prefix) :] for line in self.policy() if line.startswith(prefix))


def run(argv: list[str], env: dict[str, str], expect: str) -> None:
    """Run a whole process; fail unless it exits 0 and prints ``expect``."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or expect not in done.stdout:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")


def http(
    method: str, url: str, headers: dict[str, str], body: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """One JSON request; the answer's body and headers (an HTTP error raises)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=90) as resp:
        return json.loads(resp.read()), dict(resp.headers.items())


class Server:
    """``vpop serve`` on a free 127.0.0.1 port with a noc token, stopped by its PID."""

    def __init__(self, env: dict[str, str]) -> None:
        token = (
            subprocess.run(
                [str(VPOP), "token", "create", "--role", "noc", "--name", "bench-ansible"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        self.token_file = WORK / "token"
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        self.headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = WORK / "serve.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [str(VPOP), "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.long_poll: bool | None = None  # whether the server applied `Prefer: wait`
        deadline = time.monotonic() + 60
        while "vpop serving on" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"vpop serve did not start:\n{self.log.read_text()}")
            time.sleep(0.05)  # polling the log with a deadline: the server says when it answers
        while True:
            try:
                http("GET", self.url + "/healthz", {})
                break
            except urllib.error.HTTPError as err:
                if err.code != 503 or time.monotonic() > deadline:
                    break  # an older server without /healthz; the log line said it serves
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def select(self, isp: str) -> None:
        """(d): POST the selection, then wait for the order to be final."""
        headers = {**self.headers, "Idempotency-Key": str(uuid.uuid4())}
        body = {"subscriber": SUBSCRIBER, "isp": isp, "dry_run": False}
        order, _ = http("POST", self.url + "/api/v1/selections", headers, body)
        url = f"{self.url}/api/v1/orders/{order['order']}"
        deadline = time.monotonic() + 60
        while True:
            view, answer = http("GET", url, {**self.headers, "Prefer": "wait=30"})
            applied = "preference-applied" in {k.lower() for k in answer}
            self.long_poll = applied if self.long_poll is None else self.long_poll and applied
            if view.get("final") or view["status"] in FINAL:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"order {order['order']} still {view['status']} after 60 s")
            if not applied:
                time.sleep(0.1)  # an older server answers at once: poll
        if view["status"] != "DONE_SUCCESS":
            raise RuntimeError(f"order {order['order']}: {view['status']}: {view.get('error')}")

    def stop(self) -> None:
        """SIGTERM to the server's PID; its process group is killed if it outlives 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def ansible_setup(
    bindir: Path, lab_dir: Path, cli: dict[str, Any], ssh: str
) -> tuple[list[str], dict[str, str]]:
    """The playbook's command line (without the ISP) and environment, files under WORK."""
    home = WORK / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(lab_dir / "known_hosts", home / ".ssh" / "known_hosts")  # paramiko's pins
    template = string.Template((PLAYBOOK_DIR / "inventory.yml.tmpl").read_text())
    inventory = WORK / "inventory.yml"
    inventory.write_text(
        template.substitute(
            router=ROUTER,
            host=cli["host"],
            port=cli["port"],
            user=cli.get("username", "root"),
            ssh_type=ssh,
            key_file=lab_dir / "id_ed25519",
            host_key_checking="true" if ssh == "paramiko" else "false",
            python=bindir / "python",
        )
    )
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "ANSIBLE_CONFIG": str(PLAYBOOK_DIR / "ansible.cfg"),
        "ANSIBLE_HOME": str(WORK / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(WORK / "ansible-tmp"),
        "ANSIBLE_PERSISTENT_CONTROL_PATH_DIR": str(WORK / "ansible-pc"),
    }
    argv = [str(bindir / "ansible-playbook"), "-i", str(inventory)]
    return [*argv, str(PLAYBOOK_DIR / "select.yml"), "-e", f"subscriber={SUBSCRIBER}"], env


def versions(bindir: Path, env: dict[str, str]) -> str:
    """ansible-core's and the two collections' versions, as installed."""
    core = subprocess.run(
        [str(bindir / "ansible"), "--version"], env=env, capture_output=True, text=True
    ).stdout.split("\n", 1)[0]
    listing = subprocess.run(
        [str(bindir / "ansible-galaxy"), "collection", "list"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    wanted = ("cisco.ios ", "ansible.netcommon ")
    found = [" ".join(line.split()) for line in listing.splitlines() if line.startswith(wanted)]
    return ", ".join([core.strip(), *found])


def show(key: str, values: list[float]) -> None:
    """One peer's line: p50, min and max in ms."""
    p50, low, high = (f(values) * 1000 for f in (statistics.median, min, max))
    print(f"  {PEERS[key]:46} n={len(values)}  p50 {p50:8.1f} ms  min {low:8.1f}  max {high:8.1f}")


def main() -> None:
    """Build the lab, start the server, time the peers interleaved, print, clean up."""
    parser = argparse.ArgumentParser(description="One selection's change: Ansible against vpop.")
    parser.add_argument("--runs", type=int, default=7, help="runs per peer")
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--ssh", choices=("paramiko", "libssh"), default="paramiko")
    args = parser.parse_args()
    bindir = ensure_ansible()
    lab = Lab()
    server: Server | None = None
    try:
        state = lab.up(subscribers=args.subscribers)
        register_lab(state)
        line = next(x for x in state["lines"] if x["subscriber"] == SUBSCRIBER)
        assert line["router"] == ROUTER, line
        lab_dir = load_settings().lab_dir
        node = state["nodes"][ROUTER]
        router = Router(lab_dir, node["ssh"]["port"])
        env = dict(os.environ)
        run([str(VPOP), "select", SUBSCRIBER, ISPS[1]], env, "DONE_SUCCESS")  # sub1 has a policy
        dry = subprocess.run(
            [str(VPOP), "select", SUBSCRIBER, ISPS[0], "--dry-run"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        print(f"the change (`vpop select {SUBSCRIBER} {ISPS[0]} --dry-run` on {ROUTER}):")
        print("".join(x for x in dry.splitlines(True) if x.startswith(("-", "+", "@", " "))))
        ansible, ansible_env = ansible_setup(bindir, lab_dir, node["cli"], args.ssh)
        match = next(x for x in router.policy() if x.startswith("match "))
        ansible += ["-e", f"match={match}"]
        server = Server(env)
        server_env = {**env, "VPOP_SERVER_URL": server.url}
        server_env["VPOP_API_TOKEN_FILE"] = str(server.token_file)
        select = [str(VPOP), "select", SUBSCRIBER]
        peers: dict[str, Callable[[str], None]] = {
            "a": lambda isp: run([*ansible, "-e", f"isp={isp}"], ansible_env, "changed=1"),
            "b": lambda isp: run([*select, isp], server_env, "DONE_SUCCESS"),
            "c": lambda isp: run([*select, isp], env, "DONE_SUCCESS"),
            "d": server.select,
        }
        times: dict[str, list[float]] = {key: [] for key in peers}
        for peer in peers:  # one untimed run each: caches, the server's router session
            target = ISPS[0] if router.isp() == ISPS[1] else ISPS[1]
            peers[peer](target)
            assert router.isp() == target, (peer, target)
        order = list(peers)
        for round_ in range(args.runs):
            for key in order[round_ % 4 :] + order[: round_ % 4]:
                target = ISPS[0] if router.isp() == ISPS[1] else ISPS[1]
                started = time.perf_counter()
                peers[key](target)
                times[key].append(time.perf_counter() - started)
                now = router.isp()
                if now != target:
                    raise RuntimeError(f"{PEERS[key]}: {ROUTER} has {now}, not {target}")
        print(f"ansible: {versions(bindir, ansible_env)}; network_cli over {args.ssh}")
        checked = "checked against the lab's pins" if args.ssh == "paramiko" else "not checked"
        print(f"  CLI login {node['cli']['host']}:{node['cli']['port']}; host key {checked}")
        how = {True: "long-poll (Preference-Applied)", False: "polling every 0.1 s (no long-poll)"}
        print(f"server: `vpop serve` at {server.url}; (d) waited by {how[bool(server.long_poll)]}")
        print(
            f"{args.runs} runs per peer, interleaved; {SUBSCRIBER} toggled {ISPS[0]} <-> "
            f"{ISPS[1]} on {ROUTER}, each run checked on the router"
        )
        for key, values in times.items():
            show(key, values)
        a50 = statistics.median(times["a"])
        ratios = ", ".join(
            f"ansible/({k}) {a50 / statistics.median(times[k]):5.1f}x" for k in "bcd"
        )
        print(f"  ratios (p50): {ratios}   (target: ansible/(b) >= 10x)")
    finally:
        if server is not None:
            server.stop()
        lab.down()
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()

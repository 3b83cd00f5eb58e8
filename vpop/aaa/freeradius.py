"""FreeRADIUS as vpop's RADIUS server: its configuration, its process and its NAS clients.

vpop writes a self-contained FreeRADIUS configuration directory, ``$VPOP_STATE_DIR/radius``,
from ``templates/freeradius`` (``radiusd.conf``, ``clients.conf``, ``dictionary``): the server
listens on 127.0.0.1 (``VPOP_RADIUS_AUTH_PORT``, ``VPOP_RADIUS_ACCT_PORT``) and hands
authorize, post-auth and accounting to vpop's policy endpoints (``/radius/v1``) over HTTP on
loopback through rlm_rest, authenticated with a shared token that lives in the same
directory. The NAS clients are rows of ``radius_clients``; their secrets are files under
``radius/secrets`` (mode 0600), never in git or the database. ``VPOP_RADIUS_SECRET`` adds a
127.0.0.1 client (``localhost``) for the lab.

The process is started and stopped by PID (the pid file under the state directory; the PID
is checked to be this directory's ``freeradius`` before any signal is sent), never by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from sqlalchemy.orm import Session

from vpop.aaa.clients import config_clients
from vpop.aaa.radius_state import (
    RadiusError,
    RadiusPaths,
    radius_token,
    write_private,
)
from vpop.core.errors import BadInput
from vpop.core.settings import PROJECT_ROOT, child_environment, load_settings

TEMPLATE_ROOT = PROJECT_ROOT / "templates" / "freeradius"
TEMPLATES = ("radiusd.conf", "clients.conf", "dictionary")
TOKEN_USER = "freeradius"  # the basic-auth user name rlm_rest sends with the token
READY_LINE = "Ready to process requests"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

_ENVIRONMENT: jinja2.Environment | None = None
_ENVIRONMENT_LOCK = threading.Lock()


@dataclass(frozen=True)
class RadiusStatus:
    """Whether vpop's FreeRADIUS runs, with its PID, ports and log file."""

    running: bool
    pid: int | None
    auth_port: int
    acct_port: int
    log_file: Path

    def describe(self) -> str:
        """One line for ``vpop radius status``."""
        ports = f"127.0.0.1 auth {self.auth_port}, acct {self.acct_port}"
        if self.running:
            return f"running: pid {self.pid}, {ports}, log {self.log_file}"
        return f"stopped ({ports} when up)"


def _environment() -> jinja2.Environment:
    """The one Jinja2 environment of ``templates/freeradius``, built on first use."""
    global _ENVIRONMENT
    with _ENVIRONMENT_LOCK:
        if _ENVIRONMENT is None:
            _ENVIRONMENT = jinja2.Environment(
                loader=jinja2.FileSystemLoader(TEMPLATE_ROOT),
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=True,
                autoescape=False,
            )
        return _ENVIRONMENT


# ----------------------------------------------------------------------------- configuration


def loopback_url(url: str) -> str:
    """Validate vpop's URL for rlm_rest: ``http://`` on a loopback address, no path.

    Raises:
        BadInput: anything else (the policy endpoints answer loopback callers only).
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as err:
        raise BadInput(f"vpop URL: {url!r} has a bad port") from err
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise BadInput(
            f"vpop URL: {url!r} is not http:// on loopback; write e.g. http://127.0.0.1:8080"
        )
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise BadInput(f"vpop URL: {url!r} must be scheme, host and port only")
    host = f"[{parts.hostname}]" if parts.hostname == "::1" else parts.hostname
    return f"http://{host}:{port or 80}"


def render_config(session: Session, *, vpop_url: str, paths: RadiusPaths | None = None) -> Path:
    """Write FreeRADIUS's configuration directory from the templates and the clients table.

    Args:
        session: where the NAS clients are read from.
        vpop_url: where vpop's policy endpoints answer (loopback, e.g.
            ``http://127.0.0.1:8080``).
        paths: where to write (default: ``$VPOP_STATE_DIR/radius``).

    Returns:
        The configuration directory (``freeradius -d`` takes it).

    Raises:
        BadInput: ``vpop_url`` is not on loopback.
        RadiusError: a client's secret file is missing.
    """
    settings = load_settings()
    paths = paths or RadiusPaths.from_settings(settings)
    values: dict[str, Any] = {
        "config_dir": str(paths.root),
        "pid_file": str(paths.pid_file),
        "log_file": str(paths.log_file),
        "secrets_dir": str(paths.secrets),
        "vpop_url": loopback_url(vpop_url),
        "token": radius_token(paths),
        "auth_port": settings.radius_auth_port,
        "acct_port": settings.radius_acct_port,
        "rest_sections": [
            ("authorize", "authorize"),
            ("post-auth", "post-auth"),
            ("accounting", "accounting"),
        ],
        "clients": config_clients(session, paths, settings),
    }
    env = _environment()
    for name in TEMPLATES:
        write_private(paths.root / name, env.get_template(f"{name}.j2").render(**values))
    return paths.root


def freeradius_binary() -> str:
    """The ``freeradius`` program.

    Raises:
        RadiusError: it is not installed.
    """
    found = shutil.which("freeradius") or shutil.which("freeradius", path="/usr/sbin:/sbin")
    if found is None:
        raise RadiusError(
            "freeradius is not installed; run scripts/install.sh "
            "(apt-get install freeradius freeradius-rest freeradius-utils)"
        )
    return found


def check_config(config_dir: Path) -> None:
    """Have FreeRADIUS check the configuration (``freeradius -C``).

    Raises:
        RadiusError: FreeRADIUS refuses it (the message has its last error line).
    """
    done = subprocess.run(
        [freeradius_binary(), "-C", "-d", str(config_dir), "-l", "stdout"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RadiusError(f"FreeRADIUS refuses the configuration: {_last_error(done.stdout)}")


def _last_error(output: str) -> str:
    """The most telling line of FreeRADIUS's output: its last error, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "rror" in line or "ailed" in line]
    return (errors or lines or ["no output"])[-1][:300]


# ----------------------------------------------------------------------------- the process


def _command(binary: str, config_dir: Path, log: str) -> list[str]:
    return [binary, "-f", "-d", str(config_dir), "-l", log]


def _is_ours(pid: int, config_dir: Path) -> bool:
    """Whether ``pid`` is a live ``freeradius`` started with ``-d config_dir``."""
    if _exited(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [arg.decode(errors="replace") for arg in argv]
    return (
        bool(args)
        and Path(args[0]).name == "freeradius"
        and "-d" in args
        and args.index("-d") + 1 < len(args)
        and args[args.index("-d") + 1] == str(config_dir)
    )


def _exited(pid: int) -> bool:
    """Whether our child ``pid`` has exited: gone, or a zombie waiting to be reaped.

    Its command line is not looked at (as :func:`_is_ours` does): for a moment after the
    spawn the kernel shows it empty while the new program starts, and a start that read it
    then took a running FreeRADIUS for one that had exited (and left it running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def _read_pid(paths: RadiusPaths) -> int | None:
    try:
        return int(paths.pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def radius_status(paths: RadiusPaths | None = None) -> RadiusStatus:
    """Whether vpop's FreeRADIUS runs (its pid file names a live ``freeradius -d DIR``)."""
    settings = load_settings()
    paths = paths or RadiusPaths.from_settings(settings)
    pid = _read_pid(paths)
    running = pid is not None and _is_ours(pid, paths.root)
    return RadiusStatus(
        running=running,
        pid=pid if running else None,
        auth_port=settings.radius_auth_port,
        acct_port=settings.radius_acct_port,
        log_file=paths.log_file,
    )


def prepare(session: Session, *, vpop_url: str, paths: RadiusPaths | None = None) -> Path:
    """Render and check the configuration; refuse when vpop's FreeRADIUS already runs.

    Returns:
        The checked configuration directory.

    Raises:
        RadiusError: it already runs, or FreeRADIUS refuses the configuration.
        BadInput: ``vpop_url`` is not on loopback.
    """
    paths = paths or RadiusPaths.from_settings()
    status = radius_status(paths)
    if status.running:
        raise RadiusError(f"FreeRADIUS already runs (pid {status.pid}); `vpop radius down` first")
    config_dir = render_config(session, vpop_url=vpop_url, paths=paths)
    check_config(config_dir)
    return config_dir


def foreground_argv(config_dir: Path) -> list[str]:
    """The command that runs FreeRADIUS in the foreground, logging to standard output."""
    return _command(freeradius_binary(), config_dir, "stdout")


def start_radius(
    config_dir: Path,
    *,
    paths: RadiusPaths | None = None,
    on_exit: Callable[[int], None] | None = None,
) -> int:
    """Start FreeRADIUS in the background and wait (bounded) until it serves.

    The process gets its own session, so it outlives the command that started it; its PID
    goes to the pid file, its log to ``radius/radiusd.log``.

    Args:
        config_dir: a configuration :func:`prepare` checked.
        paths: the pid and log files (default: under ``$VPOP_STATE_DIR/radius``).
        on_exit: when given, a thread reaps the process and calls this with its exit status
            (a supervisor, e.g. ``vpop serve``, reports a death at once).

    Returns:
        Its PID.

    Raises:
        RadiusError: it exited or did not log that it is ready within the time allowed
            (the message has its last error line, e.g. a port in use).
    """
    paths = paths or RadiusPaths.from_settings()
    binary = freeradius_binary()
    paths.log_file.touch(mode=0o600)
    offset = paths.log_file.stat().st_size
    pid = os.posix_spawn(
        binary,
        _command(binary, config_dir, str(paths.log_file)),
        child_environment(),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(paths.log_file), os.O_WRONLY | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )
    write_private(paths.pid_file, f"{pid}\n")
    if on_exit is not None:
        threading.Thread(target=_reap, args=(pid, on_exit), name="freeradius", daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        log = _read_from(paths.log_file, offset)
        if READY_LINE in log:
            return pid
        if _exited(pid):
            _reap_quietly(pid)
            raise RadiusError(f"FreeRADIUS exited at start: {_last_error(log)}")
        time.sleep(0.05)
    stop_radius(paths)
    raise RadiusError(
        f"FreeRADIUS did not become ready within {START_TIMEOUT:.0f} s; see {paths.log_file}"
    )


def _read_from(path: Path, offset: int) -> str:
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read().decode(errors="replace")


def _reap(pid: int, on_exit: Callable[[int], None]) -> None:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return
    on_exit(os.waitstatus_to_exitcode(status))


def _reap_quietly(pid: int) -> None:
    """Collect ``pid``'s exit status if it is this process's child (no zombie left)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_radius(paths: RadiusPaths | None = None) -> int | None:
    """Stop vpop's FreeRADIUS by its PID: SIGTERM, then SIGKILL after a bounded wait.

    Args:
        paths: the pid file (default: under ``$VPOP_STATE_DIR/radius``).

    Returns:
        The PID that was stopped, or ``None`` when it was not running.

    Raises:
        RadiusError: it survived SIGKILL.
    """
    paths = paths or RadiusPaths.from_settings()
    pid = _read_pid(paths)
    if pid is None or not _is_ours(pid, paths.root):
        paths.pid_file.unlink(missing_ok=True)
        if pid is not None:
            _reap_quietly(pid)
        return None
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _is_ours(pid, paths.root):
            _reap_quietly(pid)
            time.sleep(0.02)
        if not _is_ours(pid, paths.root):
            break
    else:
        raise RadiusError(f"FreeRADIUS (pid {pid}) survived SIGKILL")
    _reap_quietly(pid)
    paths.pid_file.unlink(missing_ok=True)
    return pid

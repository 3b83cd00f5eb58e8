"""A lab router's two SSH logins, served by one ``sshd`` per router in the root namespace.

* the **management** login (``127.0.0.1:<port>``), which vpop uses: a shell inside the router's
  namespace, with the router's ``vtysh`` (a wrapper in its PATH), ``nft`` and ``tc``, as on
  Cumulus Linux or VyOS;
* the **CLI** login (``127.0.0.1:<cli port>``, user ``root``): lands in the router's ``vtysh``,
  as a real router's CLI does, so Ansible's ``network_cli`` (``cisco.ios.ios``), Netmiko's
  ``cisco_ios`` driver and NAPALM-style tools drive it unchanged. Interactive, it is ``vtysh``
  at the ``rc1#`` prompt (``configure terminal`` applies lines to the running daemons); with a
  command (``ssh -p Q root@127.0.0.1 'show version'``) it runs ``vtysh -c COMMAND``.

Both are the same ``sshd`` (``Match LocalPort`` selects the forced command), so they share the
router's host key, the lab's client key and its fate: cutting the router's management cuts both.
The CLI session runs ``vtysh`` in its own UTS namespace named after the router, so the prompt
names the router (vtysh takes it from the system's host name), and readline is told not to send
bracketed-paste or meta-key escapes, which screen-scraping clients would read as prompt noise.
"""

from __future__ import annotations

import os
from pathlib import Path

from vpop.lab.health import IP
from vpop.lab.processes import keypair

UNSHARE = "/usr/bin/unshare"
HOSTNAME = "/usr/bin/hostname"
VTYSH = "/usr/bin/vtysh"


def host_key_file(lab_dir: Path, router: str, *, public: bool = False) -> Path:
    """The private (or ``public``) host key file of ``router``'s sshd."""
    return lab_dir / f"ssh_host_ed25519_key-{router}{'.pub' if public else ''}"


def sshd_config_file(lab_dir: Path, router: str) -> Path:
    """The sshd configuration file of ``router``."""
    return lab_dir / f"sshd-{router}.conf"


def write_logins(lab_dir: Path, router: str, namespace: str, port: int, cli_port: int) -> Path:
    """Write ``router``'s login scripts, host key and sshd configuration; return the latter.

    Args:
        lab_dir: The lab's directory (the router's vty sockets are in ``lab_dir/router``).
        router: The router's name (``rc1``).
        namespace: Its network namespace.
        port: The management login's port on 127.0.0.1.
        cli_port: The CLI (vtysh) login's port on 127.0.0.1.
    """
    rdir = lab_dir / router
    bindir = lab_dir / "bin" / router
    bindir.mkdir(parents=True, exist_ok=True)
    vtysh = bindir / "vtysh"
    vtysh.write_text(f'#!/bin/sh\nexec {VTYSH} --vty_socket {rdir} "$@"\n')
    vtysh.chmod(0o755)
    shell = lab_dir / f"shell-{router}"
    shell.write_text(
        "#!/bin/sh\n"
        f"export PATH={bindir}:/usr/sbin:/usr/bin:/sbin:/bin PS1='{router}# ' "
        f"VPOP_ROUTER={router} TERM=dumb FRR_VTY_DIR={rdir}\n"
        'if [ -n "$SSH_ORIGINAL_COMMAND" ]; then\n'
        f'  exec {IP} netns exec {namespace} /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
        "fi\n"
        f"exec {IP} netns exec {namespace} /bin/bash --norc --noprofile -i\n"
    )
    shell.chmod(0o755)
    inputrc = lab_dir / "inputrc"
    inputrc.write_text("set enable-bracketed-paste off\nset enable-meta-key off\n")
    cli = lab_dir / f"cli-{router}"
    in_router = f'{UNSHARE} --uts /bin/sh -c \'{HOSTNAME} {router} && exec "$0" "$@"\''
    cli.write_text(
        "#!/bin/sh\n"
        f"# {router}'s CLI login: the router's vtysh, as a real router's CLI\n"
        f"export PATH=/usr/sbin:/usr/bin:/sbin:/bin INPUTRC={inputrc} VTYSH_PAGER=cat "
        f"VPOP_ROUTER={router}\n"
        'if [ -n "$SSH_ORIGINAL_COMMAND" ]; then\n'
        f"  exec {in_router} {IP} netns exec {namespace} "
        f'{VTYSH} --vty_socket {rdir} -c "$SSH_ORIGINAL_COMMAND"\n'
        "fi\n"
        f"exec {in_router} {IP} netns exec {namespace} {VTYSH} --vty_socket {rdir}\n"
    )
    cli.chmod(0o755)
    # each router its own host key, so that one can be replaced alone
    host_key, host_pub = keypair()
    key = host_key_file(lab_dir, router)
    key.write_bytes(host_key)
    os.chmod(key, 0o600)
    host_key_file(lab_dir, router, public=True).write_bytes(host_pub + b"\n")
    cfg = sshd_config_file(lab_dir, router)
    cfg.write_text(
        f"Port {port}\nPort {cli_port}\nListenAddress 127.0.0.1\n"
        f"HostKey {key}\n"
        f"PidFile {lab_dir / f'sshd-{router}.pid'}\n"
        f"AuthorizedKeysFile {lab_dir / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nAllowUsers root\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n"
        "PrintMotd no\nPrintLastLog no\nMaxSessions 64\nMaxStartups 200\n"
        f"ForceCommand {shell}\nLogLevel ERROR\nSubsystem sftp internal-sftp\n"
        # bash sources ~/.bashrc for commands it runs for sshd unless SHLVL says it is
        # nested; the lab's routers must not inherit the host's interactive setup
        "SetEnv SHLVL=1\n"
        # the CLI port lands in vtysh (Match blocks come last: they run to the file's end)
        f"Match LocalPort {cli_port}\n"
        f"  ForceCommand {cli}\n"
        "  DisableForwarding yes\n"
    )
    return cfg

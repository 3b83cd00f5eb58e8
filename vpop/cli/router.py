"""``vpop router``: the routers' SSH host keys.

``trust ROUTER`` reads the host key the router offers (without logging in), shows its type
and fingerprint (and the pinned one when it changed), and pins it in the router's
known-hosts file once the operator confirms (``--yes`` for scripts); the pin is audited.
Until a router's key is pinned, vpop sends it no credentials and no configuration.
"""

from __future__ import annotations

import click

from vpop.cli.common import CommandError, OneLineGroup, cli_actor, reported_errors

CHECK_HINT = (
    "compare it with the router's own, read on its console: "
    "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
)


@click.group(cls=OneLineGroup)
def router() -> None:
    """Routers' SSH host keys (pinned before vpop logs in)."""


@router.command("trust")
@click.argument("name", metavar="ROUTER")
@click.option("--yes", is_flag=True, help="Pin the offered key without asking (scripts).")
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1, 120),
    help="Seconds to wait for the router's SSH server.",
)
def router_trust(name: str, yes: bool, timeout: float) -> None:
    """Show the host key ROUTER offers and pin it after you confirm it."""
    from vpop.network.service import offered_key, pin_offered_key

    with reported_errors():
        offered = offered_key(name, timeout=timeout)
    where = f"{offered.hostname}:{offered.port}"
    click.echo(f"{name} ({where}) offers {offered.key_type} {offered.fingerprint}")
    if offered.is_pinned and offered.in_file:
        click.echo(f"{name}: already pinned in {offered.known_hosts}; nothing to do")
        return
    if offered.is_pinned:
        click.echo(
            f"pinned by the inventory's host_key; pinning it in {offered.known_hosts} too "
            "lets Netmiko and NAPALM check it"
        )
    elif offered.pinned:
        click.echo(
            f"CHANGED: pinned now {', '.join(offered.pinned_fingerprints)}, offered "
            f"{offered.fingerprint}. The router was reinstalled or re-keyed, or something "
            f"else answers on {where}: {CHECK_HINT}"
        )
    else:
        click.echo(f"no key is pinned for {name} yet: {CHECK_HINT}")
    question = f"Pin {offered.key_type} {offered.fingerprint} for {name}?"
    try:
        confirmed = yes or click.confirm(question, default=False)
    except click.Abort:
        confirmed = False
    if not confirmed:
        refused = "" if offered.is_pinned else f"; vpop keeps refusing {name} until it is"
        raise CommandError("VPOP-HOSTKEY", f"{name}: nothing pinned{refused}")
    with reported_errors():
        pin_offered_key(offered, cli_actor())
    click.echo(f"{name}: pinned {offered.key_type} {offered.fingerprint} in {offered.known_hosts}")

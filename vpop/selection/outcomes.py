"""What a device run produced (:class:`Outcome`), how a run is closed with it
(:func:`finish_run`) and how its failure reads in an order's ``error`` (:func:`explain`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nornir.core import Nornir
from nornir.core.inventory import Host

from tasks.deploy import PushInterrupted, PushRejected, RouterUnreachable, VerifyFailed
from vpop.core.errors import VpopError
from vpop.core.time import utcnow
from vpop.network.service import one_router
from vpop.selection.confirm import Cut
from vpop.selection.models import Run, RunStatus


class UnknownRouter(VpopError):
    """The router is not in the inventory."""

    code = "VPOP-404-ROUTER"
    status = 404


def router_target(nr: Nornir, router: str) -> tuple[Nornir, Host]:
    """``nr`` narrowed to ``router`` (:func:`~vpop.network.service.one_router`), and its host.

    Raises:
        UnknownRouter: the router is not in the inventory.
    """
    target = one_router(nr, router)
    host = target.inventory.hosts.get(router)
    if host is None:
        raise UnknownRouter(f"router {router!r} is not in the inventory")
    return target, host


@dataclass
class Outcome:
    """What a device run produced, in plain data."""

    failed: bool
    exception: BaseException | None = None
    diff: str = ""
    changed: bool = False
    result: dict[str, Any] = field(default_factory=dict)
    # the lines' raw counters read right after a successful push (accounting's cut): when,
    # and per interface (bytes in, bytes out, packets in, packets out)
    cut: Cut | None = None


def finish_run(run: Run, outcome: Outcome, timings: dict[str, float], status: RunStatus) -> None:
    for name, value in run_fields(run.router, outcome, timings, status).items():
        setattr(run, name, value)


#: The fields :func:`run_fields` sets on an ended run (the plain-statement close writes these).
RUN_END_FIELDS = ("status", "diff", "finished_at", "timings", "result", "error")


def run_fields(
    router: str, outcome: Outcome, timings: dict[str, float], status: RunStatus
) -> dict[str, Any]:
    """What an ended run records (:data:`RUN_END_FIELDS`): status, diff, end, timings (ms),
    result and error."""
    return {
        "status": status.value,
        "diff": outcome.diff,
        "finished_at": utcnow(),
        "timings": {k: round(v * 1000, 2) for k, v in timings.items()},
        "result": {
            router: {
                "failed": outcome.failed,
                "changed": outcome.changed,
                "pushed": outcome.result.get("pushed", []),
                "installed": outcome.result.get("installed", {}),
                "exception": repr(outcome.exception) if outcome.exception else None,
            }
        },
        "error": str(outcome.exception) if outcome.exception else None,
    }


def explain(err: BaseException | None, router: str) -> str:
    if err is None:
        return "unknown error"
    if isinstance(err, RouterUnreachable):
        if "VPOP-HOSTKEY" in str(err):  # reached, but refused before anything was sent
            return f"router {router} was refused (host key); nothing was changed: {err}"
        return f"router {router} is unreachable; nothing was changed: {err}"
    if isinstance(err, PushRejected):
        return f"router {router} rejected the change: {err}"
    if isinstance(err, PushInterrupted):
        return f"the session to {router} broke during the push; router state unknown: {err}"
    if isinstance(err, VerifyFailed):
        return f"router {router} did not show the change after the push: {err}"
    return f"{type(err).__name__}: {err}"

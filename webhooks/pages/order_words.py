"""An order's state in plain words for the subscriber: headline, detail, advice, tone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vpop.selection.service import (
    OrderStatus,
)


def plain_words(
    view: Mapping[str, Any], names: Mapping[str, str], current: str | None
) -> dict[str, str]:
    """What an order's state means to the subscriber, and what to do.

    Args:
        view: The order (:func:`vpop.orders.order_view`).
        names: ISP ids to display names.
        current: The ISP the line uses now (confirmed), or None for the default.

    Returns:
        ``headline``, ``detail``, ``advice`` (empty when nothing is to be done) and ``tone``
        (``progress``, ``success`` or ``failure``, for styling).
    """
    wanted = names.get(view["isp"], view["isp"])
    now_on = names.get(current, current) if current else "the network's default ISP"
    status = view["status"]
    if status == OrderStatus.DONE_SUCCESS:
        if view["dry_run"]:
            return _words(
                "Checked", f"A switch to {wanted} was checked; nothing changed.", "", "success"
            )
        return _words(
            "Done",
            f"Your line now uses {wanted}. New connections go through {wanted} from now on.",
            "",
            "success",
        )
    if status == OrderStatus.DONE_FAILED:
        return _words(
            "Not switched",
            f"The switch to {wanted} did not work, so nothing changed for you: your line "
            f"still uses {now_on}.",
            f"Try again in a few minutes. If it fails again, contact support and quote order "
            f"{view['order']}.",
            "failure",
        )
    if status == OrderStatus.RECONCILED:
        return _words(
            "Not switched",
            f"The network could not confirm the switch to {wanted} and put your line back on "
            f"{now_on}.",
            "Choose the ISP again from the list. If it keeps happening, contact support and "
            f"quote order {view['order']}.",
            "failure",
        )
    if status == OrderStatus.UNKNOWN:
        return _words(
            "Checking",
            f"The switch to {wanted} was interrupted; the network is checking your line and "
            "will put it right by itself.",
            "Keep this page open: it updates by itself.",
            "progress",
        )
    if status == OrderStatus.RUNNING:
        return _words(
            "Switching",
            f"Your line is being moved to {wanted} now.",
            "Keep this page open: it updates by itself.",
            "progress",
        )
    return _words(
        "Received",
        f"Your choice of {wanted} is received and waiting for its turn.",
        "Keep this page open: it updates by itself.",
        "progress",
    )


def _words(headline: str, detail: str, advice: str, tone: str) -> dict[str, str]:
    return {"headline": headline, "detail": detail, "advice": advice, "tone": tone}


def consent_words(view: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, str] | None:
    """What an ISP's request means to the subscriber while pending, declined or expired
    (None for the other statuses, which :func:`plain_words` explains)."""
    wanted = names.get(view["isp"], view["isp"])
    status = view["status"]
    if status == OrderStatus.PENDING_CONSENT:
        return {
            "headline": "Waiting for your answer",
            "detail": f"{wanted} asked to take over your line. Nothing changes unless you confirm.",
            "advice": "Answer from the ISP list or the link you were sent.",
            "tone": "progress",
        }
    if status == OrderStatus.DECLINED:
        return {
            "headline": "Declined",
            "detail": f"You declined {wanted}'s request; nothing changed.",
            "advice": "",
            "tone": "success",
        }
    if status == OrderStatus.EXPIRED:
        return {
            "headline": "Expired",
            "detail": f"{wanted}'s request was not answered in time; nothing changed.",
            "advice": "",
            "tone": "failure",
        }
    return None

"""The lab's router agent: the product agent plus the one fault drill the lab tests need.

The product agent (``tasks/router_agent.py``) has no way to be told to fail. The lab's
drills need a push cut midway, so ``vpop lab up`` writes this variant next to the lab's
inventory and names it in each lab router's ``vpop_shell`` connection extras
(``agent_file``); :mod:`tasks.connection` sends that file instead of the product agent only
for hosts whose inventory says so. A production inventory never names it.

The variant is the product agent's source with :data:`DRILL_HOOK` inserted before its
``main()`` call: the hook replaces the ``vty`` operation's handler (its argument checks
stay the product's) with one that reads a one-shot ``cut-after:N`` from
``<lab_dir>/faults/<router>`` (``Lab.set_fault`` writes it; the router is the name of its
vty directory, ``<lab_dir>/<router>``) and, on the next configuration push, applies the
first N commands and kills its own SSH session.
"""

from __future__ import annotations

from pathlib import Path

from tasks.connection import AGENT_SOURCE
from vpop.core.errors import LabError
from vpop.core.settings import PROJECT_ROOT

PRODUCT_AGENT = PROJECT_ROOT / "tasks" / "router_agent.py"  # and router_kernel.py before it
AGENT_FILE = "drill_agent.py"
MAIN_CALL = '\nif __name__ == "__main__":\n    main()\n'

DRILL_HOOK = '''
# ---- lab only: the cut-after drill (vpop/lab/drill_agent.py) ----------------------------


FAULTS_DIR = {faults_dir!r}


def _armed_cut():
    """``cut-after:N`` from this router's fault file, consumed (None when unarmed)."""
    path = os.path.join(FAULTS_DIR, os.path.basename(os.path.normpath(VTY_DIR)))
    try:
        with open(path) as fh:
            kind, _, count = fh.read().strip().partition(":")
        if kind != "cut-after" or not count.isdigit():
            return None
        os.unlink(path)
    except OSError:
        return None
    return int(count)


_product_vty = OPS["vty"].handler


def _drill_vty(req):
    """A push with a cut armed applies its first N commands, then the session dies."""
    cut = _armed_cut() if req.get("config") else None
    if cut is None or cut >= len(req["commands"]):
        return _product_vty(req)
    answer = _product_vty(dict(req, commands=req["commands"][:cut]))
    if not answer["ok"]:
        return answer
    os.kill(os.getppid(), 9)  # the SSH session dies mid-push, as in a real cut
    os._exit(1)


OPS["vty"] = OPS["vty"]._replace(handler=_drill_vty)
'''


def drill_agent_source(faults_dir: Path, product: str | None = None) -> str:
    """The lab variant's source: the product agent with :data:`DRILL_HOOK` before ``main()``.

    Args:
        faults_dir: where the routers' fault files are (``<lab_dir>/faults``).
        product: the product agent's source (default: the one routers get,
            :data:`tasks.connection.AGENT_SOURCE`).

    Raises:
        LabError: the product agent no longer ends with its ``main()`` call.
    """
    source = AGENT_SOURCE if product is None else product
    if not source.endswith(MAIN_CALL) or "OPS: dict[str, Op]" not in source:
        raise LabError(
            f"{PRODUCT_AGENT}: no operation table or final main() call to install the drills"
        )
    hook = DRILL_HOOK.replace("{faults_dir!r}", repr(str(faults_dir)))
    return source[: -len(MAIN_CALL)] + hook + MAIN_CALL


def write_drill_agent(lab_dir: Path) -> Path:
    """Write the lab variant into ``lab_dir`` and return its path (the inventory names it)."""
    path = lab_dir / AGENT_FILE
    path.write_text(drill_agent_source(lab_dir / "faults"))
    return path

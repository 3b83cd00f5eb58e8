"""The lab domain's entry point: what other domains, the API, the CLI, pages and jobs use.

Everything outside this package imports from here (import-linter holds it), so the
modules behind it can change shape without touching their callers.
"""

from __future__ import annotations

from vpop.lab.builder import Lab
from vpop.lab.netns import listen_in_netns
from vpop.lab.registry import register_lab
from vpop.lab.shop import ITEMS as SHOP_ITEMS
from vpop.lab.shop import config_path as shop_config_path
from vpop.lab.shop import write_config as write_shop_config
from vpop.lab.shop import write_token_file as write_shop_token
from vpop.lab.topology import PORTAL_ADDRESS, SERVICE_ADDRESS

__all__ = [
    "Lab",
    "PORTAL_ADDRESS",
    "SERVICE_ADDRESS",
    "SHOP_ITEMS",
    "listen_in_netns",
    "register_lab",
    "shop_config_path",
    "write_shop_config",
    "write_shop_token",
]

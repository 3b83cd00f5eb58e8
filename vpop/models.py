"""Every domain's models on one metadata: what Alembic compares against and tests create.

Importing this module registers every table (and lets SQLAlchemy resolve relationships that
cross domains by name). Nothing but migrations, tools and tests needs it.
"""

from __future__ import annotations

from vpop.aaa import models as aaa
from vpop.accounting import models as accounting
from vpop.billing import models as billing
from vpop.billing import payment_models as payments
from vpop.catalogue import models as catalogue
from vpop.core import audit, locks
from vpop.core.db import Base
from vpop.identity import models as identity
from vpop.leasing import models as leasing
from vpop.monitoring import models as monitoring
from vpop.selection import models as selection

metadata = Base.metadata

__all__ = [
    "aaa",
    "accounting",
    "audit",
    "billing",
    "catalogue",
    "identity",
    "leasing",
    "locks",
    "metadata",
    "monitoring",
    "payments",
    "selection",
]

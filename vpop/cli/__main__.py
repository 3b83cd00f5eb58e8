"""``python -m vpop.cli``: the ``vpop`` command."""

from vpop.cli import main

main()

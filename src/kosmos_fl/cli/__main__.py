"""``python -m kosmos_fl.cli``: the ``kosmos-fl`` command (used for child processes)."""

from kosmos_fl.cli import main

main()

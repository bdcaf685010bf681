"""``python -m mongars_core``: the ``mongars`` command."""

from mongars_core.cli import main

main()

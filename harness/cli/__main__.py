"""``python -m adbench.cli``: the same as the ``adbench`` command."""

from . import main

main()

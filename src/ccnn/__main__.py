"""``python -m ccnn``: the ``ccnn`` command."""

import sys

from .cli import main

sys.exit(main())

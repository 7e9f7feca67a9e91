"""``python -m ltzoo``: the ``ltzoo`` command (see `ltzoo.cli`)."""

import sys

from ltzoo.cli import main

sys.exit(main())

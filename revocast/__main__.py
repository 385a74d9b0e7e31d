"""``python -m revocast``: the same as the ``revocast`` command."""

import sys

from revocast.cli import main

sys.exit(main())

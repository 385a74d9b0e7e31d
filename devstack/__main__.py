"""``python -m devstack fetch|up|run -- CMD...`` (the same commands as ``revocast dev``)."""

import sys

from devstack.cli import main

if __name__ == "__main__":
    sys.exit(main())

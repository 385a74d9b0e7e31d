"""``python -m consumers --service NAME``: run one consumer (see :mod:`consumers.service`)."""

import sys

from consumers.service import main

if __name__ == "__main__":
    sys.exit(main())

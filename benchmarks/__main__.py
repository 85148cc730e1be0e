"""``python -m benchmarks [NAME ...] [--quick] [--out DIR] [--list]``: see benchmarks/README.md."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())

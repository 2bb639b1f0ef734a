"""`python -m vaenas.train arch=<architecture JSON or search run folder> recipe=<name> [key=value ...]`: see vaenas.train.cli."""

import sys

from vaenas.train.cli import main

if __name__ == "__main__":
    sys.exit(main())

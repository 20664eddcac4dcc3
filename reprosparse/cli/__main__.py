"""`python -m reprosparse.cli`: the same as the `reprosparse` command."""

import sys

from . import main

sys.exit(main())

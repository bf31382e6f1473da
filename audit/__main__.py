"""``python -m audit``: the same command line as ``metai-audit``."""

import sys

from audit.cli import main

sys.exit(main())

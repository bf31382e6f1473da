"""``python -m coordinator.relay``: the relay's child process, which the service starts (see ``process.py``)."""

import sys

from coordinator.relay.process import child_main

sys.exit(child_main())

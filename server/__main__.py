"""``python -m server serve`` is the same as ``roster serve``."""

import sys

from server.cli import main

sys.exit(main())

"""``python -m fireflyfs.storage_service``: run one storage node (see server.py)."""

import sys

from .server import main

sys.exit(main())

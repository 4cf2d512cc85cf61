"""``python -m batchlaw.tools`` is the ``batchlaw`` command."""

import sys

from batchlaw.tools.cli import main

sys.exit(main())

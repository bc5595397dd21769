"""``python -m tantra.cli`` is the ``tantra`` console script."""

import sys

from tantra.cli import main

sys.exit(main())

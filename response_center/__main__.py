"""``python -m response_center ...``: the ``trygg center`` commands without the umbrella CLI."""

from __future__ import annotations

import sys

from response_center.cli import main

sys.exit(main())

"""``python -m composeseg.pipelines.cli``: the same as the ``composeseg`` script."""

import sys

from composeseg.pipelines.cli import main

sys.exit(main())

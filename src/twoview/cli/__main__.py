"""``python -m twoview.cli``: the ``twoview`` command."""

import sys

from twoview.cli import main

sys.exit(main())

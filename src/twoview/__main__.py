"""``python -m twoview``: the ``twoview`` command."""

import sys

from twoview.cli import main

sys.exit(main())

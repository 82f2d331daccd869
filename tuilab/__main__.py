"""`python -m tuilab` runs the `tuilab` command."""

import sys

from tuilab.cli import main

sys.exit(main())

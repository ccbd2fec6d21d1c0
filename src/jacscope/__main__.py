"""`python -m jacscope` runs the command line."""

import sys

from jacscope.cli import main

sys.exit(main())

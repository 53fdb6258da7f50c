"""``python -m gloria`` runs the command line."""

import sys

from gloria.cli.main import main

sys.exit(main())

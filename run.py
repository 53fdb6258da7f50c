"""The release's entry point, kept for its users: ``python run.py -c CONFIG --train --test --train_pct 0.01``
does exactly what ``gloria train`` does with the same flags."""

import sys

from gloria.cli.train import main

if __name__ == "__main__":
    sys.exit(main())

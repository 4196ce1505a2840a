"""``python -m training.quality``: see `training.quality.cli`."""

import sys

from training.quality.cli import main

sys.exit(main())

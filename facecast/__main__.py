"""`python -m facecast ...`: the same CLI as the `facecast` console script."""

import sys

from facecast.cli import main

sys.exit(main())

"""`python -m benchmarks ...` = `stackserve bench ...`."""

import sys

from benchmarks.cli import main

sys.exit(main())

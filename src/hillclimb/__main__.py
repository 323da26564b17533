"""`python -m hillclimb ...` — the same CLI; this is what `torchrun -m hillclimb train` runs."""

import sys

from hillclimb.cli import main

sys.exit(main())

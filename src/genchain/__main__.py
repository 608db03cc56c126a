"""``python -m genchain`` (what ``torchrun -m genchain`` runs) is the ``genchain`` command."""

import sys

from genchain.cli import main

sys.exit(main())

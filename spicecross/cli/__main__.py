"""``python -m spicecross.cli``: the same as the ``spicecross`` console script."""
import sys

from . import main

sys.exit(main())

"""`python -m pynode.app.cli`: the same as the `devpynode` command."""

import sys

from pynode.app.cli import main

sys.exit(main())

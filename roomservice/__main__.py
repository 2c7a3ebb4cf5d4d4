"""`python -m roomservice` is the `roomservice` command."""

import sys

from roomservice.cli import main

sys.exit(main())

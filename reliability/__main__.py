"""`python -m reliability`: the lab's command line (see reliability/cli/main.py)."""
import sys

from reliability.cli.main import main

sys.exit(main())

"""`python -m agent` is `nodetask-agent`."""

import sys

from agent.cli.main import main

sys.exit(main())

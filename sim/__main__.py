import sys

from sim.harness.cli import main

sys.exit(main())

import sys

from runtime_shim.cli import main

sys.exit(main())

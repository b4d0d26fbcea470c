import sys

from cliplab.cli import main

sys.exit(main())

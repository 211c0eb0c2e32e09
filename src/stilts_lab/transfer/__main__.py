import sys

from stilts_lab.transfer.cli import main

sys.exit(main())

import sys

from stilts_lab.report.cli import main

sys.exit(main())

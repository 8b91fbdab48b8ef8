import sys

from trygg.cli import main

sys.exit(main())

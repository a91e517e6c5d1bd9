"""``python -m keeper.backtest SCENARIO ...``"""

import sys

from keeper.backtest.cli import main

sys.exit(main())

"""python -m unet_transfer COMMAND ... (the `unet-transfer` command)."""

import sys

from unet_transfer.cli import main

sys.exit(main())

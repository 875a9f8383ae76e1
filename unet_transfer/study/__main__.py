"""python -m unet_transfer.study EXPERIMENT [overrides...] (the same as `unet-transfer study`)."""

import sys

from unet_transfer.study.runner import main

sys.exit(main())

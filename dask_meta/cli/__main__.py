"""``python -m dask_meta.cli``: the ``dask-meta`` command."""

import sys

from dask_meta.cli.console import main

sys.exit(main())

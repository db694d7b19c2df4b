"""peftbench: how much do we lose, and what do we save, by training under 1% of a BERT's parameters?

From Python: `peftbench.train(...)`, `peftbench.study(...)`, `peftbench.results(folders)`,
`peftbench.report(folders, out)` (api.py; docs/python-api.md). The command line is `peftbench` (cli.py).
The layers below the API are the packages config, data, models, engine, studies, reports and artifacts.
"""

from .version import __version__
from .api import Run, report, results, study, train

__all__ = ["Run", "train", "study", "results", "report", "__version__"]

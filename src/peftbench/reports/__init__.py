"""The report: OUT/report.md, its PNG figures and explorer.html, built from result.json files only.

  build.py      `write_report` / `collect`: the sections in order, the methods overview, learning curves
  glue.py       the GLUE tables (per task, the learning-rate choice, every method vs full FT)
  scaling.py    the SQuAD size curve: tie rule, crossover, data regimes, decision rule
  cells.py      what the sections share: a table cell, flags, the rate a method is read at
  ../stats.py   means, t and bootstrap intervals, paired differences, EVP, the verdicts (`decide`)
  versus.py     every method vs full FT: paired intervals (and, under the protocol, the procedure's verdicts)
  protocol.py   select=holdout: which runs a table uses, the protocol caption, EVP, seeds used, optimism
  baselines.py  the trivial predictor a run must beat (majority class, first sentence)
  figures.py    the matplotlib figures; explorer.py the interactive plotly page
  table.py      the runs as a pandas DataFrame (`peftbench.results`)
"""

from .baselines import baseline
from .build import collect, write_report

__all__ = ["baseline", "collect", "write_report"]

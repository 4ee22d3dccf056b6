"""``neurodit compare``: several generators judged side by side with one set of settings.

- :mod:`neurodit.compare.stage`: :func:`compare` (the entry), :class:`CompareConfig`, inputs and sampling;
- :mod:`neurodit.compare.schema`: what CMP_DIR holds (``comparison.json`` schema ``neurodit.compare/1``)
  and its one reader :func:`read_comparison`;
- :mod:`neurodit.compare.rows`: one row per generator and the ranking;
- :mod:`neurodit.compare.render`: the table and the figure, drawn once by the stage; the report embeds
  the PNG the stage wrote and builds its table with the same ``table_rows``. Nothing here imports
  :mod:`neurodit.report` (the report imports this package, never the other way round).

Headlines claim only what was shown. The table and the rankings order every row, but a row is called
"best" (``best`` in comparison.json, the summary sentence, the report) only where a 95 % interval shows it:

- downstream: the largest gain (``sex/real+synthetic`` minus ``sex/real`` balanced accuracy) among rows
  the downstream experiment says were "helped" (its bootstrap 95 % CI above 0 and Wilcoxon p < 0.05, the
  experiment's own verdict), and above the CI of the next such row if there is one; otherwise "no generator
  clearly changes downstream accuracy" (or which rows raised / lowered it);
- classifier test (and ``overall``): the eligible row with the lowest worst-view C2ST AUC, only when that
  AUC's CI lies wholly below the runner-up's worst-view CI, or when no view tells it from real (every
  p >= 0.05) while a view tells every other eligible row apart (p < 0.05); the sentence says which. One
  eligible row is reported, not called best.

Non-overlapping intervals are a conservative test of a difference (two rows' numbers are not paired here);
no best named means no difference was shown, not that the rows are equal.
"""

from neurodit.compare.rows import rank_rows
from neurodit.compare.schema import SCHEMA, read_comparison
from neurodit.compare.stage import COMPARE_ARMS, CompareConfig, compare, compare_config

__all__ = ["COMPARE_ARMS", "SCHEMA", "CompareConfig", "compare", "compare_config", "rank_rows", "read_comparison"]

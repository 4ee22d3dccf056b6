"""``neurodit compare``: several generators judged side by side with one set of settings.

- :mod:`neurodit.compare.stage`: :func:`compare` (the entry), :class:`CompareConfig`, inputs and sampling;
- :mod:`neurodit.compare.schema`: what CMP_DIR holds (``comparison.json`` schema ``neurodit.compare/1``)
  and its one reader :func:`read_comparison`;
- :mod:`neurodit.compare.rows`: one row per generator and the ranking;
- :mod:`neurodit.compare.render`: the table and the figure, drawn once by the stage; the report embeds
  the PNG the stage wrote and builds its table with the same ``table_rows``. Nothing here imports
  :mod:`neurodit.report` (the report imports this package, never the other way round).
"""

from neurodit.compare.rows import rank_rows
from neurodit.compare.schema import SCHEMA, read_comparison
from neurodit.compare.stage import COMPARE_ARMS, CompareConfig, compare, compare_config

__all__ = ["COMPARE_ARMS", "SCHEMA", "CompareConfig", "compare", "compare_config", "rank_rows", "read_comparison"]

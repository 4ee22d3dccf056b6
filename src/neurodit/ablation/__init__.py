"""Ablations on the demo's phantom cohorts (``neurodit demo --ablation NAME``).

- :mod:`neurodit.ablation.stage`: the pretraining ablation (run, summary, verdicts; imports the demo's stages);
- :mod:`neurodit.ablation.schema`: ABL_DIR's files and their reader (what the report imports);
- :mod:`neurodit.ablation.render`: the table and the figure.
"""

from neurodit.ablation.schema import ABLATIONS, FIGURE, RESULT, SCHEMA, TABLE, read_ablation

__all__ = ["ABLATIONS", "FIGURE", "RESULT", "SCHEMA", "TABLE", "read_ablation"]

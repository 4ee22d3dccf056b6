"""What ``neurodit demo --ablation pretraining`` writes (ABL_DIR, :mod:`neurodit.ablation.stage`) and its
one reader, :func:`read_ablation`.

``ablation.json``::

    schema      "neurodit.ablation.pretraining/1"
    config      the resolved PretrainingAblationConfig
    starts      {natural, adni: {run, steps, train_seconds, final_loss[, images [{name, licence, crops}]]}};
                natural {init} instead when it was given (natural_init), not pretrained here
    table       [{start, steps, seeds, auc_<view>, auc_<view>_ci95 (view: voxel, texture, cnn; seed means),
                  frechet_ratio, precision, recall, msssim_syn_syn, msssim_real_real, memorization,
                  gain, gain_ci95 (downstream sex gain, real+synthetic vs real), train_seconds,
                  loss_end (mean training loss over the last quarter of logged steps),
                  frechet_ratio_seeds, loss_end_seeds (each seed's value)}]
    contrasts   [{start, steps, c2st {view: {diff, ci95}}, verdict, downstream {diff, ci95} | null,
                  downstream_verdict, frechet_ratio {start, scratch, per_seed_diff}, loss_end {per_seed_diff}}]
                (each pretrained start vs scratch; per_seed_diff: start - scratch for each training seed)
    verdicts    one sentence per contrast
    floor       compare's real-vs-real floor;  compare  "compare/comparison.json";  rule  the verdict rule
    timings_s, wall_s, commands (each stage's CLI command)

``ablation.md`` (table and verdicts) and ``ablation.png`` (quality against finetuning steps):
:mod:`neurodit.ablation.render`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neurodit.errors import NeuroditError
from neurodit.io import read_json

ABLATIONS = ("pretraining",)
STARTS = ("scratch", "natural", "adni")
VIEWS = ("voxel", "texture", "cnn")
RESULT, TABLE, FIGURE = "ablation.json", "ablation.md", "ablation.png"
SCHEMA = "neurodit.ablation.pretraining/1"


def read_ablation(folder: str | Path) -> dict[str, Any]:
    """``ABL_DIR/ablation.json`` (NeuroditError naming the file when absent or of another schema)."""
    path = Path(folder) / RESULT
    if not path.is_file():
        raise NeuroditError("not an ablation folder (no ablation.json)", path)
    data = read_json(path)
    if data.get("schema") != SCHEMA:
        raise NeuroditError(f"schema {data.get('schema')!r}, expected {SCHEMA!r}", path)
    return data


__all__ = ["ABLATIONS", "FIGURE", "RESULT", "SCHEMA", "STARTS", "TABLE", "VIEWS", "read_ablation"]

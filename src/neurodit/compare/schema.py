"""What ``neurodit compare`` writes (CMP_DIR) and its one reader, :func:`read_comparison`.

``neurodit compare``: several generators judged side by side with one set of settings.

Each input is a synthetic cohort folder (``neurodit sample`` / ``neurodit baseline`` output) or a
training RUN folder (then ``n`` volumes are sampled first, balanced over its classes). Every synthetic
cohort is judged against the same real held-out set (``--real``) and training set (``--train``) by
the full judge (:func:`neurodit.metrics.evaluate.evaluate_arrays`, one shared ``EvalConfig``; the feature
encoder is our own, trained once on TRAIN and cached by the training data's hash, so every row is
measured with the same encoder) and by the downstream sex arms (``sex/real`` vs ``sex/real+synthetic[<name>]``
of :mod:`neurodit.downstream.experiment`: one experiment with every row's cohort, named by the row).

Downstream source: the real **held-out** participants (cross-validated, grouped by participant), never
TRAIN: the generators were fitted on TRAIN, so a test fold holding training subjects would reward a
generator for copying them (the ``copy`` baseline would "help" by leaking test subjects into training).

Grids: the synthetic cohorts must all share one grid (else NeuroditError naming the odd folder, before
anything is written). ``--real`` and ``--train`` may be raw cohort folders on any grid: when theirs
differs they are resampled onto the synthetic grid by the data layer
(``neurodit.data.cohort.load_volumes(cohort, grid)``: Gaussian anti-aliasing + trilinear, as ``prepare``).

``CMP_DIR`` (written atomically; nothing is left behind on an error):

- ``comparison.json``::

    schema        "neurodit.compare/1"
    inputs        {real, train}  folders as given;  resampled {real: bool, train: bool}
    grid          {shape, affine}  of the synthetic cohorts (real/train resampled onto it when needed)
    n_real, n_train (int)
    config        the resolved CompareConfig (eval and downstream settings shared by every row)
    floor         {c2st {view: {auc, auc_ci95, p_value}} (real held-out vs real training: what "cannot
                   tell apart" looks like here), msssim_real_real, frechet (train vs held-out features,
                   or null), mmd_rbf (train vs held-out {mmd2, p_value})}
    rows          [{name, label, budget, kind ("run" | "synthetic"), input (folder as given),
                    synthetic (cohort judged, relative to CMP_DIR when sampled here), eval ("eval-<name>"),
                    downstream_dir ("downstream", the DS_DIR every row shares | null), n_synthetic,
                    quality {c2st {view: {auc, auc_ci95, p_value}}, c2st_worst_auc, frechet, frechet_ratio
                             (frechet / the real-vs-real floor's: the number the table and figure show;
                             null without a floor), precision, recall, mmd_rbf {mmd2, p_value}},
                    diversity {syn_syn, real_real, low_diversity, zero_diversity},
                    memorization {fraction_above, expected_fraction, flagged, n_duplicates},
                    downstream {real, real_synthetic (balanced accuracy means of sex/real and the row's
                                sex/real+synthetic[<name>]), gain, ci95 [lo, hi], p_wilcoxon, outcome,
                                n_runs} | null,
                    cost {train_seconds, sample_seconds, sample_seconds_per_volume, parameters,
                          peak_rss_mb, peak_gpu_mb}  (null where the folders' run.json do not record it),
                    verdicts {family: sentence}, eligible (bool: no near-exact copies of training subjects
                    and not zero diversity; a memorization flag alone is shown, not disqualifying)}]
    ranking       {c2st: [names, lowest worst-view AUC first], downstream: [names, largest gain first],
                   overall: [eligible names by worst-view C2ST AUC, then the others]}
    best          {c2st, downstream, overall}: names among eligible rows, null where no difference was
                   shown (the rule: :mod:`neurodit.compare`)
    summary       one sentence: the best generator by C2ST and by downstream gain where shown, else that
                   none is clearly better (and what it rests on: AUCs, gains and their 95 % CIs)
    figures       {comparison: "comparison.png"}
    timings_s     {name: {sample, eval}, downstream (the one experiment of every row), floor, load}
    eval_reuse    {name: {from (the EVAL_DIR given for its synthetic folder), reused (bool: copied in as
                   eval-<name>, not judged again), why_not (null, or why it was judged again: other folders,
                   settings, grid or counts, or an input written after it)}} for rows given one
                   (``--reuse-eval SYN=EVAL_DIR``); a row judged here is seeded as a lone ``neurodit
                   evaluate``, so a reused evaluation carries the numbers judging it again would give

- ``comparison.md``: the Markdown table (:func:`neurodit.compare.render.comparison_markdown`);
- ``comparison.png``: C2ST AUC per view and Fréchet distance / the real-vs-real floor per generator;
- ``eval-<name>/``: each row's full EVAL_DIR (``metrics.json``, figures, ``run.json``);
- ``downstream/``: one DS_DIR for every row: ``sex/real`` trained once, ``sex/real+synthetic[<name>]`` per
  row on identical folds, validation splits and initialisations (synthetic ids scoped as ``<name>:syn-...``,
  since generators number their volumes alike); ``syn-<name>/``: cohorts sampled here from RUN inputs;
- ``run.json``.

``label`` is what a reader sees for a row (``--label-as NAME=DIR``, else the folder name) and ``budget``
what it was trained and sampled with (generator, steps, seconds, device), so an undertrained baseline
is never mistaken for a verdict on its method.
"""


from __future__ import annotations

from pathlib import Path

from neurodit.errors import NeuroditError
from neurodit.io import read_schema_json

SCHEMA = "neurodit.compare/1"
RESULT_FILE = "comparison.json"
TABLE_FILE = "comparison.md"
FIGURE_FILE = "comparison.png"
REQUIRED = ("rows", "floor", "ranking", "best", "summary")


def read_comparison(cmp_dir: str | Path) -> dict:
    """``CMP_DIR/comparison.json`` (schema ``neurodit.compare/1``); NeuroditError naming the file when it is
    missing, of another schema or lacks one of ``REQUIRED``."""
    path = Path(cmp_dir) / RESULT_FILE
    data = read_schema_json(path, SCHEMA, "neurodit compare", REQUIRED)
    if not isinstance(data["rows"], list):
        raise NeuroditError("'rows' must be a list", path)
    return data


def comparison_figures(cmp_dir: str | Path, data: dict) -> dict[str, Path]:
    """name -> PNG path of comparison.json's ``figures`` map, for files that exist inside CMP_DIR (a path
    that leaves the folder is ignored: a report never reads outside the folders it was given)."""
    root = Path(cmp_dir).resolve()
    out = {}
    for name, rel in (data.get("figures") or {}).items():
        p = (root / str(rel)).resolve()
        if p.is_file() and root in p.parents:
            out[str(name)] = p
    return out


__all__ = ["FIGURE_FILE", "REQUIRED", "RESULT_FILE", "SCHEMA", "TABLE_FILE", "comparison_figures", "read_comparison"]

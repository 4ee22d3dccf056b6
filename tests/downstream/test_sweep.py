"""The sweep (issue 21): nested participant fractions inside the outer folds, generators refitted on exactly
the classifier's training participants (read back from each run folder's train_participants.tsv), every
cell with CIs in results.json, and synthetic cohorts that copy source participants refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import write_tiny_cohort
from neurodit.downstream import DownstreamConfig, labelled_from_prepared
from neurodit.downstream.labelled import LabelledSet
from neurodit.downstream.splits import grouped_folds, grouped_holdout
from neurodit.downstream.sweep import (
    SweepConfig,
    copy_audit,
    first_per_class,
    load_sweep_config,
    nested_fractions,
    read_results,
    rows_of,
    run_sweep,
)
from neurodit.errors import NeuroditError


def _groups(n: int, sessions: int = 1) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(n) % 2, sessions)
    groups = np.repeat([f"p{i:03d}" for i in range(n)], sessions)
    return labels, groups


def test_nested_fractions_are_nested_stratified_and_inside_the_training_side():
    labels, groups = _groups(40, sessions=2)  # two sessions each: a participant is never split
    for seed in range(3):
        for tr, te in grouped_folds(labels, groups, 4, seed):
            test_ids = set(groups[te])
            pool_l, pool_g = labels[tr], groups[tr]
            subs = nested_fractions(pool_l, pool_g, (0.1, 0.25, 0.5, 1.0), seed)
            prev: set[str] = set()
            for f, ids in subs.items():
                ids = set(ids)
                assert not ids & test_ids  # never on both sides of the outer split
                assert prev <= ids  # nested: a larger fraction adds participants
                prev = ids
                per_class = np.bincount([pool_l[pool_g == i][0] for i in ids], minlength=2)
                n_class = np.bincount([pool_l[pool_g == g][0] for g in np.unique(pool_g)], minlength=2)
                want = np.maximum(2, np.ceil(f * n_class)).astype(int)
                assert per_class.tolist() == np.minimum(want, n_class).tolist()
            assert prev == set(pool_g)  # fraction 1 is the whole training side
            # every session of a kept participant comes along
            part = rows_of(LabelledSet(np.zeros((len(tr), 1, 1, 1), np.float32), pool_l, pool_g, ("F", "M")),
                           subs[0.25])
            assert len(part) == 2 * len(subs[0.25])


def test_first_per_class_takes_the_leading_blocks():
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    assert first_per_class(labels, {0: 2, 1: 1}).tolist() == [0, 1, 3]
    with pytest.raises(NeuroditError, match="volumes per class"):
        first_per_class(labels, {0: 5, 1: 1})


def test_copy_audit_refuses_copies_and_shared_ids(make_set):
    src = make_set(12, side=16, seed=0)
    fresh = make_set(12, side=16, seed=7, prefix="syn")
    got = copy_audit(fresh, src, "syn/participants.tsv")
    assert got["n_copies"] == 0 and got["max_r"] < 0.999
    copied = LabelledSet(src.volumes[:4].copy(), src.labels[:4], np.array([f"syn-{i}" for i in range(4)]),
                         src.classes, "copy")
    with pytest.raises(NeuroditError, match="copy a source participant"):
        copy_audit(copied, src, "copy/participants.tsv")
    with pytest.raises(NeuroditError, match="ids equal source"):
        copy_audit(src.subset(np.arange(3)), src, "same/participants.tsv")


def test_sweep_config_layers_and_unknown_keys(tmp_path):
    cfg = load_sweep_config(None, ["downstream.folds=4", "generator_settings.dit.max_steps=7"],
                            real_fractions=[1, 0.5], synthetic_multiples=[4])
    assert cfg.real_fractions == (0.5, 1.0) and cfg.synthetic_multiples == (0, 4)  # 0, the baseline, always runs
    assert cfg.downstream.folds == 4 and cfg.generator_settings["dit"]["max_steps"] == 7
    assert cfg.fractions_of("pca") == (0.5, 1.0)
    assert load_sweep_config(None, None, generator_fractions={"dit": [1.0]}).fractions_of("dit") == (1.0,)
    with pytest.raises(NeuroditError, match="unknown config key"):
        load_sweep_config(None, ["downstream.nope=1"])
    with pytest.raises(NeuroditError, match="fractions must be in"):
        load_sweep_config(None, None, target_fractions=[0.0, 1.0])


def test_sex_age_loss_ignores_unknown_ages():
    from neurodit.downstream.train import sex_age_loss

    out = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, -1.0]])
    y = torch.tensor([0, 1])
    w = torch.ones(2)
    ce = torch.nn.functional.cross_entropy(out[:, :2], y)
    assert sex_age_loss(out, y, torch.tensor([float("nan")] * 2), w).item() == pytest.approx(ce.item(), rel=1e-6)
    got = sex_age_loss(out, y, torch.tensor([0.0, float("nan")]), w).item()
    assert got == pytest.approx(ce.item() + 1.0, rel=1e-6)  # (1 - 0)^2 on the one known age


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """A tiny sweep, both settings: pca refitted per fraction, a pca cohort of the whole source for the
    transfer backbones; 2 folds x 1 seed, 1 epoch."""
    from neurodit.data.prepare import prepare
    from neurodit.generators import fit, sample
    from neurodit.train import resolve_train_config

    root = tmp_path_factory.mktemp("sweep")
    prep = prepare(write_tiny_cohort(root / "src", n=20, shape=(16, 16, 16), voxel_size=10.0), root / "prep",
                   shape=(16, 16, 16))
    target = write_tiny_cohort(root / "tgt", n=16, shape=(16, 16, 16), voxel_size=10.0, seed=3, diagnosis=True)
    run = fit(prep, resolve_train_config(None, {"label": "sex"}, prep_dir=str(prep), out=str(root / "pca"),
                                         generator="pca", seed=0))
    syn = sample(run, 8, root / "syn", seed=0)
    cfg = SweepConfig(real_fractions=(0.5, 1.0), synthetic_multiples=(0, 2), generators=("pca",),
                      generator_settings={"pca": {"label": "sex"}}, target_fractions=(0.5, 1.0),
                      downstream=DownstreamConfig(folds=2, seeds=1, epochs=1, shape=(16, 16, 16), n_boot=200))
    torch.set_num_threads(1)
    out = run_sweep(prep, root / "out", target=target, synthetic={"pca": syn}, cfg=cfg)
    return out, prep, cfg, target


def test_every_cell_is_in_results_with_cis(tiny_sweep):
    out, _, cfg, _ = tiny_sweep
    res = read_results(out)
    aug = {(c["generator"], c["real_fraction"], c["multiple"]): c for c in res["augment"]["cells"]}
    assert set(aug) == {(g, f, m) for f in (0.5, 1.0) for g, m in (("real", 0), ("pca", 2))}
    tra = {(c["backbone"], c["mode"], c["target_fraction"]) for c in res["transfer"]["cells"]}
    want = {("scratch", "scratch", f) for f in (0.5, 1.0)} | {
        (b, m, f) for b in ("real", "real+synthetic[pca]") for m in ("probe", "finetune") for f in (0.5, 1.0)}
    assert tra == want
    for c in res["augment"]["cells"] + res["transfer"]["cells"]:
        assert c["n_runs"] == 2  # 2 folds x 1 seed
        for m in ("balanced_accuracy", "roc_auc"):
            s = c["metrics"][m]
            assert len(s["values"]) == 2 and s["ci95"][0] <= s["mean"] <= s["ci95"][1]
    # the 2x cells carry 2 synthetic volumes per training participant
    for f in (0.5, 1.0):
        runs = pd.read_csv(out / "runs.csv")
        sub = runs[(runs.setting == "augment") & (runs.real_fraction == f) & (runs.generator == "pca")]
        assert (sub["n_synthetic"] == 2 * sub["n_fit"]).all()
    # comparisons: each synthetic cell against real only, each transfer question per fraction, with a verdict
    assert len(res["augment"]["comparisons"]) == 2
    assert {c["question"] for c in res["transfer"]["comparisons"]} >= {
        "real backbone (probe) vs scratch", "real backbone: fine-tune vs linear probe"}
    for c in res["augment"]["comparisons"] + res["transfer"]["comparisons"]:
        lo, hi = c["metrics"]["balanced_accuracy"]["ci95"]
        assert lo <= c["metrics"]["balanced_accuracy"]["mean_diff"] <= hi
        assert c["outcome"] in ("helped", "hurt", "no clear effect") and "95% CI" in c["verdict"]
    assert len(res["verdicts"]["augment"]) == 1 and res["verdicts"]["probe_vs_finetune"]
    assert res["transfer"]["backbones"]["real+synthetic[pca]"]["copy_audit"]["n_copies"] == 0
    assert (out / "augment.png").stat().st_size > 1000 and (out / "transfer.png").stat().st_size > 1000


def test_each_generator_was_fitted_on_exactly_its_fractions_training_participants(tiny_sweep):
    from neurodit.data.leakage import run_training_set

    out, prep, cfg, _ = tiny_sweep
    d = cfg.downstream
    source = labelled_from_prepared(prep, "sex", d.shape)
    runs = pd.read_csv(out / "runs.csv")
    seen = 0
    for fold, (tr, te) in enumerate(grouped_folds(source.labels, source.groups, d.folds, d.seed, source.name)):
        pool = source.subset(tr)
        for f, ids in nested_fractions(pool.labels, pool.groups, cfg.real_fractions, d.seed).items():
            part = pool.subset(rows_of(pool, ids))
            fit_i, val_i = grouped_holdout(part.labels, part.groups, d.val_fraction, d.seed,
                                           f"{source.name} (seed {d.seed}, fold {fold}, fraction {f:g})")
            run_dir = out / "generators" / "pca" / f"s{d.seed}-f{fold}-r{f:g}"
            fitted = set(run_training_set(run_dir).ids)
            assert run_training_set(run_dir).source.endswith("train_participants.tsv")
            assert fitted == set(part.groups[fit_i])  # exactly the classifier's training participants
            assert not fitted & set(source.groups[te]) and not fitted & set(part.groups[val_i])
            row = runs[(runs.setting == "augment") & (runs.fold == fold) & (runs.real_fraction == f)
                       & (runs.generator == "pca")]
            assert int(row["n_fit"].iloc[0]) == len(fitted)
            assert not (run_dir / "model").exists()  # weights pruned unless keep_generator_models
            seen += 1
    assert seen == 4


def test_sweep_refuses_a_synthetic_cohort_copying_the_source(tiny_sweep, tmp_path):
    from neurodit.data.cohort import read_participants, write_participants
    from neurodit.data.prepare import export_prepared

    _, prep, cfg, target = tiny_sweep
    copy = export_prepared(prep, tmp_path / "copy")
    table = read_participants(copy / "participants.tsv")
    table["participant_id"] = [f"syn-{i:06d}" for i in range(len(table))]  # new ids, same volumes
    write_participants(table, copy / "participants.tsv")
    before = sorted(p.name for p in copy.iterdir())
    small = SweepConfig(generators=(), target_fractions=(1.0,), downstream=cfg.downstream)
    with pytest.raises(NeuroditError, match="copy a source participant"):
        run_sweep(prep, tmp_path / "out", target=target, synthetic={"copy": copy}, cfg=small)
    assert not (tmp_path / "out").exists() and sorted(p.name for p in copy.iterdir()) == before


def test_report_shows_the_sweep(tiny_sweep, tmp_path):
    from neurodit.report import build_report
    from neurodit.report.discover import detect_kind

    out = tiny_sweep[0]
    assert detect_kind(out) == "sweep"
    page = build_report([out], tmp_path / "r.html").read_text()
    assert "When synthetic data helps" in page and "fine-tune vs linear probe" in page
    assert page.count("data:image/png;base64") >= 2  # both learning-curve figures


def test_rebuild_gives_back_the_same_results(tiny_sweep, tmp_path):
    import json
    import shutil

    from neurodit.downstream.sweep import rebuild_results

    copy = tmp_path / "sw"
    shutil.copytree(tiny_sweep[0], copy)
    before = read_results(copy)
    after = read_results(rebuild_results(copy))
    # runs.csv keeps 6 significant digits: the summaries agree to that, verdicts word for word
    for setting in ("augment", "transfer"):
        for a, b in zip(before[setting]["cells"], after[setting]["cells"], strict=True):
            assert json.dumps({k: v for k, v in a.items() if k != "metrics"}) == \
                json.dumps({k: v for k, v in b.items() if k != "metrics"})
            assert a["metrics"]["balanced_accuracy"]["mean"] == pytest.approx(b["metrics"]["balanced_accuracy"]["mean"],
                                                                              abs=1e-5)
    # verdicts from the rounded runs.csv: the same outcome per comparison and differences within rounding
    for setting in ("augment", "transfer"):
        for a, b in zip(before[setting]["comparisons"], after[setting]["comparisons"], strict=True):
            assert a["outcome"] == b["outcome"]
            assert a["metrics"]["balanced_accuracy"]["mean_diff"] == pytest.approx(
                b["metrics"]["balanced_accuracy"]["mean_diff"], abs=1e-5)
    assert len(after["verdicts"]["transfer"]) == len(before["verdicts"]["transfer"])


def test_cli_runs_a_sweep_and_refuses_bad_lists(tiny_sweep, tmp_path):
    from typer.testing import CliRunner

    from neurodit.cli import app

    _, prep, _, target = tiny_sweep
    args = ["sweep", "--source", str(prep), "--out", str(tmp_path / "sw"), "--real-fraction", "1",
            "--synthetic-multiple", "0,1", "--generator", "pca", "--target-fraction", "1", "--target", str(target),
            "--pretrain", "sex,sex+age", "--folds", "2", "--seeds", "1", "--epochs", "1",
            "--set", "downstream.shape=[16, 16, 16]", "--set", "downstream.n_boot=100",
            "--set", "generator_settings.pca.label=sex"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = read_results(tmp_path / "sw")
    names = set(out["transfer"]["backbones"])
    assert names == {"real (sex)", "real (sex+age)"}  # one backbone per task
    assert any(c["question"] == "real (sex+age) backbone vs real (sex) (finetune)" for c in out["transfer"]["comparisons"])
    assert "1x pca synthetic" in res.output
    bad_args = [str(tmp_path / "sw2") if a == str(tmp_path / "sw") else a for a in args] + ["--real-fraction", "half"]
    bad = CliRunner().invoke(app, bad_args)
    assert bad.exit_code == 2 and "--real-fraction 'half' must be comma-separated numbers" in bad.output
    assert not (tmp_path / "sw2").exists()

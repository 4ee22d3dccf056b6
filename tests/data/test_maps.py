"""Scalar maps other than MD (issue 22): a cohort folder's map.json picks the unit checks and the model-range
window; prepare --map names the map of a folder without one; sampled and exported folders carry it on; the
judge refuses non-MD maps with one line (its morphometry is MD's)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from helpers import write_tiny_cohort
from neurodit.data.cohort import load_volumes, read_cohort
from neurodit.data.maps import MAPS, get_map, read_map, write_map
from neurodit.data.prepare import export_prepared, load_prepared, prepare
from neurodit.errors import NeuroditError


def _as_fa(folder):
    """Turn a tiny MD cohort into an FA-like one: values in [0, 1] (0.2 + 300 x MD, clipped)."""
    for f in sorted(folder.glob("*.nii.gz")):
        img = nib.load(f)
        md = np.asarray(img.get_fdata(), np.float32)
        fa = np.where(md > 0, np.clip(0.2 + 300.0 * md, 0.0, 0.95), 0.0).astype(np.float32)
        nib.save(nib.Nifti1Image(fa, img.affine), f)
    return folder


def test_map_specs_check_their_units():
    md = np.full((6, 6, 6), 0.9e-3, np.float32)
    fa = np.full((6, 6, 6), 0.4, np.float32)
    MAPS["md"].check(md, "x.nii.gz")
    MAPS["fa"].check(fa, "y.nii.gz")
    with pytest.raises(NeuroditError, match=r"y.nii.gz: median MD 0.4 .*not in mm²/s"):
        MAPS["md"].check(fa, "y.nii.gz")
    with pytest.raises(NeuroditError, match=r"median FA 0.0009 .*not FA in \[0, 1\]"):
        MAPS["fa"].check(md, "x.nii.gz")
    with pytest.raises(NeuroditError, match="not FA"):
        MAPS["fa"].check(fa * 3, "z.nii.gz")  # FA above 1
    assert get_map("FA").normalization().to_dict() == {"vmin": 0.0, "vmax": 1.0, "unit": "1"}
    with pytest.raises(NeuroditError, match="unknown map 't1'"):
        get_map("t1")


def test_an_fa_folder_is_read_prepared_and_exported_as_fa(tmp_path):
    src = _as_fa(write_tiny_cohort(tmp_path / "fa", n=4, shape=(16, 16, 16), voxel_size=10.0))
    with pytest.raises(NeuroditError, match="not in mm²/s"):  # no map.json: MD, and these are not MD
        load_volumes(read_cohort(src))
    with pytest.raises(NeuroditError, match="not in mm²/s"):
        prepare(src, tmp_path / "p0", shape=(16, 16, 16))
    assert not (tmp_path / "p0").exists()
    prep = prepare(src, tmp_path / "prep", shape=(16, 16, 16), map_name="fa")
    p = load_prepared(prep)
    assert p.map == "fa" and p.norm.vmax == 1.0
    vols = np.asarray(p.volumes)
    inside = vols[:, p.mask]
    assert inside.max() > 0.0 and inside.min() >= -1.0  # FA 0.2..0.95 maps inside the window, not clipped at +1
    assert np.percentile(inside[inside > -1], 50) < 0.95
    out = export_prepared(prep, tmp_path / "exp")
    assert read_map(out) == "fa" and sorted(f.name for f in out.glob("*_fa.nii.gz"))
    back, _ = load_volumes(read_cohort(out))  # read back with FA's checks
    assert 0.0 <= back.min() and back.max() <= 1.0
    # a map.json makes --map unnecessary; a contradicting --map is refused; split keeps it on both halves
    write_map(src, "fa")
    from neurodit.data.split import split_cohort

    halves = split_cohort(src, tmp_path / "tr", tmp_path / "ho", heldout_fraction=0.5)
    assert [read_cohort(h).map for h in halves] == ["fa", "fa"]
    assert load_prepared(prepare(src, tmp_path / "prep2", shape=(16, 16, 16))).map == "fa"
    with pytest.raises(NeuroditError, match="--map md, but the folder says it holds fa"):
        prepare(src, tmp_path / "prep3", shape=(16, 16, 16), map_name="md")
    (src / "map.json").write_text(json.dumps({"map": "t2"}))
    with pytest.raises(NeuroditError, match="map.json: unknown map 't2'"):
        read_cohort(src)


def test_a_pca_run_on_fa_samples_fa_and_the_judge_takes_it_on_mds_scale(tmp_path):
    from neurodit.generators import fit, sample
    from neurodit.metrics.evaluate import evaluate
    from neurodit.train import resolve_train_config

    src = _as_fa(write_tiny_cohort(tmp_path / "fa", n=6, shape=(16, 16, 16), voxel_size=10.0))
    prep = prepare(src, tmp_path / "prep", shape=(16, 16, 16), map_name="fa")
    run = fit(prep, resolve_train_config(None, {"label": "sex"}, prep_dir=str(prep), out=str(tmp_path / "run"),
                                         generator="pca", seed=0))
    syn = sample(run, 4, tmp_path / "syn", seed=0)
    assert read_map(syn) == "fa"
    vols, _ = load_volumes(read_cohort(syn))
    assert 0.0 <= vols.min() and vols.max() <= 1.0
    # the judge's reference: FA of participants the generator never saw (another draw, other ids)
    held = _as_fa(write_tiny_cohort(tmp_path / "held", n=6, shape=(16, 16, 16), voxel_size=10.0, seed=5))
    tsv = held / "participants.tsv"
    tsv.write_text(tsv.read_text().replace("sub-", "hel-"))
    for f in held.glob("sub-*.nii.gz"):
        f.rename(f.with_name(f.name.replace("sub-", "hel-")))
    real = export_prepared(prepare(held, tmp_path / "prep_held", shape=(16, 16, 16), map_name="fa"),
                           tmp_path / "real")
    from neurodit.metrics.config import EvalConfig

    cfg = EvalConfig(max_pairs=6, permutations=10, c2st_views=("voxel",), features=False)
    metrics = json.loads((evaluate(real, syn, tmp_path / "eval", cfg=cfg) / "metrics.json").read_text())
    assert metrics["map"] == "fa" and metrics["tissue"] == {"skipped": "tissue classes are MD thresholds"}
    assert "morphometry" not in metrics and any("FA judged on MD's scale" in n for n in metrics["notes"])
    assert 0.0 <= metrics["msssim"]["real_syn"]["mean"] <= 1.0
    # one map judged against the same map only
    with pytest.raises(NeuroditError, match="holds FA, the real folder MD"):
        evaluate(write_tiny_cohort(tmp_path / "md", n=4, shape=(16, 16, 16), voxel_size=10.0), syn, tmp_path / "e2",
                 cfg=cfg)
    assert not (tmp_path / "e2").exists()

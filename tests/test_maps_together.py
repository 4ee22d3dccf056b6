"""Several maps generated together (issue 22 item 2): prepare --maps, the C-channel DiT, 3D UNet and latent
path, consistent samples, split / export per map, the per-map judge and the joint MD-FA view, custom maps."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from neurodit.cli import app
from neurodit.data.maps import check_consistent, get_map, make_consistent, map_folders, read_map
from neurodit.errors import NeuroditError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
GRID = (16, 16, 16)


@pytest.fixture(scope="module")
def md_fa(tmp_path_factory):
    """A 16-subject md/fa phantom (8 F / 8 M), split 12 / 4, each half prepared on a 16^3 grid with --maps
    md,fa and exported back (the real folders on the generator's grid)."""
    from neurodit.data.phantom import make_phantom_cohort
    from neurodit.data.prepare import export_prepared, prepare
    from neurodit.data.split import split_cohort

    root = tmp_path_factory.mktemp("mdfa")
    ph = make_phantom_cohort("camcan", 16, root / "ph", seed=2, voxel_size=6.0, maps=("md", "fa"))
    train, held = split_cohort(ph, root / "train", root / "held", heldout_fraction=0.25, seed=0)
    prep = prepare(train, root / "prep", shape=GRID, maps=("md", "fa"))
    prep_held = prepare(held, root / "prep_held", shape=GRID, maps=("md", "fa"))
    return {"root": root, "ph": ph, "train": train, "held": held, "prep": prep,
            "real": export_prepared(prep_held, root / "real"), "train_real": export_prepared(prep, root / "train_real")}


def _cfg(prep, out, overrides=None, **over):
    from neurodit.train import resolve_train_config

    preset = out.parent / f"{out.name}-preset.yaml"
    preset.write_text(yaml.safe_dump({"grid_shape": list(GRID), "space": "pixel", "num_layers": 2,
                                      "num_attention_heads": 2, "attention_head_dim": 32, "patch_size": 16}))
    flags = dict(prep_dir=str(prep), out=str(out), preset=str(preset), max_steps=2, batch_size=4,
                 preview_per_class=1, preview_steps=2, log_every=1, checkpoint_every=0, num_threads=1,
                 mixed_precision="fp32")
    flags.update(over)
    return resolve_train_config(None, overrides, **flags)


def test_prepare_keeps_a_subjects_maps_together(md_fa):
    from neurodit.data.prepare import load_prepared

    prep = load_prepared(md_fa["prep"])
    assert prep.maps == ("md", "fa") and prep.channels == 2 and prep.map == "md+fa"
    assert prep.volumes.shape == (12, 2, *GRID)
    assert [n.vmax for n in prep.norms] == [4e-3, 1.0]
    # channel c of subject i is that subject's map c, each in its own window (resampled 6 -> ~12 mm)
    ids = list(prep.table["participant_id"])
    for c, m in enumerate(("md", "fa")):
        src = nib.load(md_fa["train"] / m / f"{ids[0]}_{m}.nii.gz").get_fdata()
        got = prep.norms[c].to_physical(prep.volumes[0, c][prep.mask])
        assert abs(float(got[got > 0].mean()) / float(src[src > 0].mean()) - 1) < 0.15, m
    assert prep.volumes[:, 0][:, prep.mask].min() >= -1.0 and prep.volumes[:, 1].max() <= 1.0
    with pytest.raises(NeuroditError, match="one-map prepared folder"):
        prep.require_one_map("the pca generator")


def test_prepare_maps_refuses_mismatched_or_missing_map_folders(md_fa, tmp_path):
    import shutil

    from neurodit.data.prepare import prepare

    with pytest.raises(NeuroditError, match="no rd/ cohort folder"):
        prepare(md_fa["train"], tmp_path / "p1", shape=GRID, maps=("md", "rd"))
    bad = tmp_path / "bad"
    shutil.copytree(md_fa["train"], bad)
    tsv = bad / "fa" / "participants.tsv"
    lines = tsv.read_text().splitlines()
    tsv.write_text("\n".join(lines[:-1]) + "\n")  # fa lacks the last subject
    os.remove(bad / "fa" / f"{lines[-1].split()[0]}_fa.nii.gz")
    with pytest.raises(NeuroditError, match="does not list the participants") as err:
        prepare(bad, tmp_path / "p2", shape=GRID, maps=("md", "fa"))
    assert str(tsv) in str(err.value) and not (tmp_path / "p2").exists()


def test_make_consistent_enforces_the_tensor_constraints():
    rng = np.random.default_rng(0)
    vols = {"md": rng.normal(1e-3, 2e-3, (4, 5)).astype(np.float32), "fa": rng.normal(0.5, 0.7, (4, 5)),
            "ad": rng.normal(1.2e-3, 1e-3, (4, 5)), "rd": rng.normal(1.0e-3, 1e-3, (4, 5))}
    assert check_consistent(vols)  # the raw draws break them
    out = make_consistent(vols)
    assert check_consistent(out) == []
    assert out["md"].min() >= 0 and 0 <= out["fa"].min() and out["fa"].max() <= 1
    assert (out["fa"][out["md"] == 0] == 0).all() and (np.asarray(vols["md"]) <= 0).any()
    swapped = np.asarray(vols["ad"]) < np.asarray(vols["rd"])
    iso = (np.clip(vols["ad"], 0, 4e-3) + 2 * np.clip(vols["rd"], 0, 4e-3)) / 3
    assert np.allclose(out["ad"][swapped], iso[swapped]) and np.allclose(out["rd"][swapped], iso[swapped])
    assert (out["fa"][swapped] == 0).all()  # an isotropic tensor has FA 0
    mask = np.zeros((4, 5), bool)
    mask[1:3] = True
    assert all((v[~mask] == 0).all() for v in make_consistent(vols, mask).values())


def test_two_map_dit_trains_samples_consistent_subjects_and_is_judged(md_fa, tmp_path):
    """The must-show run: a 2-map tiny DiT trains, samples and evaluates end to end with per-map metrics
    and the joint view; every sampled subject obeys the constraints."""
    from neurodit.metrics.config import EvalConfig
    from neurodit.metrics.evaluate import evaluate
    from neurodit.metrics.joint import read_joint
    from neurodit.report.build import build_report
    from neurodit.runs import TrainedRun
    from neurodit.sample import sample_diffusion
    from neurodit.train.loop import train_diffusion

    run = train_diffusion(_cfg(md_fa["prep"], tmp_path / "run"))
    preset = json.loads((run / "preset.json").read_text())
    assert preset["maps"] == 2 and preset["in_channels"] == 2
    assert {p.name for p in (run / "samples").glob("*.png")} == {"preview.png", "real.png", "preview_fa.png",
                                                                 "real_fa.png"}
    opened = TrainedRun(run, torch.device("cpu"))
    assert opened.maps == ("md", "fa") and opened.input_shape == (2, 64, 64)
    syn = sample_diffusion(run, 4, tmp_path / "syn", steps=2, progress=False)
    assert map_folders(syn) == {"md": syn / "md", "fa": syn / "fa"}
    tables = [(syn / m / "participants.tsv").read_text() for m in ("md", "fa")]
    assert tables[0] == tables[1]  # the same subjects, in the same rows
    for k in range(1, 5):
        vols = {m: nib.load(syn / m / f"syn-{k:06d}.nii.gz").get_fdata().astype(np.float32) for m in ("md", "fa")}
        assert check_consistent(vols) == []
        assert (vols["fa"][vols["md"] == 0] == 0).all() and (vols["md"] > 0).any()
    cfg = EvalConfig(max_pairs=10, permutations=10, c2st_views=("voxel",), calibrate=False, features=False)
    ev = evaluate(md_fa["real"], syn, tmp_path / "ev", train=md_fa["train_real"], cfg=cfg)
    for m in ("md", "fa"):
        metrics = json.loads((ev / m / "metrics.json").read_text())
        assert metrics["map"] == m and 0.0 <= metrics["c2st"]["views"]["voxel"]["auc"] <= 1.0
        assert ("tissue" in metrics and "skipped" not in metrics["tissue"]) == (m == "md")
    joint = read_joint(ev)
    pair = joint["pairs"]["md~fa"]
    assert -1 <= pair["corr"]["real"]["mean"] <= 1 and pair["corr"]["synthetic"]["n"] == 4
    # a 2-step DiT draws noise: its joint MD-FA histogram is far from real, beyond two real sets' distance
    assert 0 < pair["floor"] < pair["joint_tv"] and pair["tv_ratio"] > 2
    assert joint["verdict"].startswith("MD-FA relation not kept") and (ev / "joint.png").is_file()
    html = build_report([ev], tmp_path / "r.html").read_text()
    assert 'id="maps"' in html and "MD vs FA" in html


def test_three_maps_fill_the_latent_rgb_and_the_3d_unet_takes_c_channels(md_fa, tmp_path):
    from neurodit.generators.inputs import MosaicInputs, VolumeInputs
    from neurodit.models import LatentCodec, load_preset, make_tiny_vae
    from neurodit.tiling import make_spec

    codec = LatentCodec(make_tiny_vae(), scale=0.5)
    assert codec.carriers(1) == [[0, 1, 2]] and codec.carriers(2) == [[0, 2], [1]] and codec.carriers(3) == [[0], [1], [2]]
    with pytest.raises(NeuroditError, match="do not fit"):
        codec.carriers(4)
    x = torch.rand(2, 2, 64, 64) * 2 - 1
    z = codec.encode(x)
    assert z.shape == (2, 4, 8, 8) and codec.decode(z, 2).shape == (2, 2, 64, 64)
    with pytest.raises(NeuroditError, match="maps must be >= 1"):
        load_preset("XL-2-256", {"maps": 4})
    # the 3D UNet sees (N, M, D, H, W); one map keeps (N, D, H, W)
    spec = make_spec(GRID, axis=2)
    vin = VolumeInputs(None, spec, maps=2)
    vols = np.random.default_rng(0).uniform(-1, 1, (3, 2, *GRID)).astype(np.float32)
    assert vin.input_shape == (2, *GRID) and vin.decode(vin.encode(vols)).shape == (3, 2, *GRID)
    assert vin.preview_mosaics(vin.encode(vols), clamp=True).shape == (3, 2, 64, 64)
    mos = MosaicInputs(load_preset("tiny", {"grid_shape": list(GRID), "maps": 2, "patch_size": 8}), spec)
    back = mos.decode(mos.encode(vols))
    assert back.shape == (3, 2, *GRID) and np.array_equal(back, vols)  # tiling per map is exact


def test_ddpm3d_trains_and_samples_two_maps(md_fa, tmp_path):
    from neurodit.generators.base import fit, sample

    cfg = _cfg(md_fa["prep"], tmp_path / "u", {"unet": {"channels": [8, 16]}}, generator="ddpm3d",
               preview_per_class=0)
    run = fit(cfg.prep_dir, cfg)
    out = sample(run, 2, tmp_path / "usyn", steps=2, progress=False)
    assert read_map(out / "fa") == "fa" and len(list((out / "fa").glob("syn-*.nii.gz"))) == 2


def test_custom_map_named_in_map_json(tmp_path, md_fa):
    """A map beyond the four: its map.json gives unit and window; prepare, the unit check and export use them."""
    import shutil

    from neurodit.data.prepare import export_prepared, load_prepared, prepare

    src = md_fa["train"] / "fa"
    folder = tmp_path / "mk"
    shutil.copytree(src, folder)
    (folder / "map.json").write_text(json.dumps({"map": "mk", "unit": "1", "window": [0, 2]}))
    assert read_map(folder) == "mk" and get_map("mk").vmax == 2.0
    prep = load_prepared(prepare(folder, tmp_path / "prep", shape=GRID))
    assert prep.map == "mk" and prep.norm.vmax == 2.0
    back = export_prepared(tmp_path / "prep", tmp_path / "exp")
    assert json.loads((back / "map.json").read_text()) == {"map": "mk", "unit": "1", "window": [0.0, 2.0]}
    (folder / "map.json").write_text(json.dumps({"map": "fa", "unit": "1", "window": [0, 2]}))
    with pytest.raises(NeuroditError, match="must be a new identifier"):
        read_map(folder)
    runner = CliRunner()
    res = runner.invoke(app, ["prepare", str(src), "--out", str(tmp_path / "p3"), "--map", "kurt"])
    assert res.exit_code == 2 and "unknown map 'kurt'" in res.output and not (tmp_path / "p3").exists()


def test_cli_prepare_maps_and_evaluate_refuses_a_one_map_real_folder(md_fa, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["prepare", str(md_fa["train"]), "--out", str(tmp_path / "p"), "--maps", "md,fa",
                              "--shape", *map(str, GRID)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", "--real", str(md_fa["real"] / "md"), "--synthetic", str(md_fa["real"]),
                              "--out", str(tmp_path / "ev")])
    assert res.exit_code == 2 and "not a multi-map folder" in res.output and not (tmp_path / "ev").exists()


def test_a_grey_model_initialises_a_several_map_dit(tmp_path):
    """--init from a one-map (grey) DiT into a 2-map one: fed the same mosaic in both channels, each output
    channel is the grey model's output (the embedding / C, the head copied per map)."""
    from neurodit.models import build_dit, load_init, load_preset

    grey = load_preset("tiny", {"grid_shape": list(GRID), "patch_size": 8, "num_layers": 2, "learn_sigma": True})
    torch.manual_seed(0)
    src = build_dit(grey, 2, dit_init=False).eval()
    src.save_pretrained(tmp_path / "grey")
    two = load_init(tmp_path / "grey", grey.__class__(**{**grey.__dict__, "maps": 2}), 2).eval()
    assert two.config.in_channels == 2 and two.config.out_channels == 4
    x = torch.randn(3, 1, 64, 64)
    t, y = torch.tensor([10, 500, 900]), torch.tensor([0, 1, 2])
    with torch.no_grad():
        a = src(x, timestep=t, class_labels=y).sample  # (3, 2, 64, 64): prediction, variance
        b = two(x.expand(-1, 2, -1, -1), timestep=t, class_labels=y).sample  # (3, 4, 64, 64)
    for c in range(2):
        assert torch.allclose(b[:, c], a[:, 0], atol=1e-4) and torch.allclose(b[:, 2 + c], a[:, 1], atol=1e-4)


def test_joint_view_tells_kept_from_broken_md_fa_relations():
    """Known answers: synthetic subjects drawn like the real ones keep the relation (TV near the floor, the
    correlation difference's CI holds 0); FA drawn independently of MD breaks it (rank correlation ~0 against
    the real -0.8, joint histogram far beyond the floor)."""
    from neurodit.metrics.joint import joint_verdict, joint_view

    def subject(rng, tied: bool):
        md = rng.uniform(0.5e-3, 3e-3, (8, 8, 8)).astype(np.float32)
        fa = (0.8 - 250.0 * md + rng.normal(0, 0.03, md.shape)) if tied else rng.uniform(0.05, 0.7, md.shape)
        return [md, np.clip(fa, 0.01, 1.0).astype(np.float32)]

    rng = np.random.default_rng(0)
    real, train = [subject(rng, True) for _ in range(20)], [subject(rng, True) for _ in range(20)]
    good, bad = [subject(rng, True) for _ in range(20)], [subject(rng, False) for _ in range(20)]
    kept = joint_view(real, good, ("md", "fa"), train)["pairs"]["md~fa"]
    broken = joint_view(real, bad, ("md", "fa"), train)["pairs"]["md~fa"]
    assert kept["corr"]["real"]["mean"] < -0.8 and kept["floor_sets"] == "train vs held-out"
    assert kept["tv_ratio"] < 1.5 and kept["corr"]["diff"]["ci95"][0] <= 0 <= kept["corr"]["diff"]["ci95"][1]
    assert abs(broken["corr"]["synthetic"]["mean"]) < 0.05 and broken["corr"]["diff"]["ci95"][0] > 0.7
    assert broken["tv_ratio"] > 5
    assert "relation kept" in joint_verdict({"md~fa": kept}) and "not kept" in joint_verdict({"md~fa": broken})


def test_prepare_json_maps_register_custom_windows_in_a_fresh_process(monkeypatch):
    """A run folder's prepare.json copy is all a sampler has: reading its maps declares a custom map's window,
    so make_consistent knows it in a process that never read the cohort's map.json."""
    from neurodit.data import maps as maps_mod
    from neurodit.data.normalize import Normalization
    from neurodit.data.prepare import maps_meta, maps_of

    meta = maps_meta({"md": Normalization(), "mk": Normalization(0.0, 3.0, "1")})
    assert meta["map"] == "md+mk" and meta["maps"] == ["md", "mk"] and meta["normalization"]["vmax"] == 4e-3
    monkeypatch.setattr(maps_mod, "MAPS", {k: v for k, v in maps_mod.MAPS.items() if k in maps_mod.BUILTIN})
    names, norms = maps_of(meta, "prepare.json")
    assert names == ("md", "mk") and norms[1].vmax == 3.0 and get_map("mk").vmax == 3.0
    out = make_consistent({"md": np.full(3, -1.0), "mk": np.array([-1.0, 1.5, 9.0])})
    assert out["mk"].tolist() == [0.0, 1.5, 3.0] and out["md"].tolist() == [0.0, 0.0, 0.0]
    assert maps_of({"map": "md"}, "prepare.json") == ((), ())

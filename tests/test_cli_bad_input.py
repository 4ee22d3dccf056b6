"""Bad input end to end through the CLI (issue 13, items 2, 4, 5): every case exits 2 with ONE stderr line
naming the file and the problem, leaves no output (nor a hidden temporary folder), and does not touch its
inputs (every input folder is hashed before and after)."""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from helpers import tree_hash, write_tiny_cohort  # noqa: E402
from neurodit.cli import app  # noqa: E402
from test_weights import malicious  # noqa: E402


def run_cli(args: list[str], inputs: list[Path], pattern: str, filename: str, out: Path | None = None) -> str:
    """Invoke the CLI; assert exit 2, one line naming ``filename`` and matching ``pattern``, no output
    (nor ``.<out>.*`` temporary sibling), inputs byte-identical. Returns the line."""
    before = tree_hash(*inputs)
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("error: ") and filename in line and re.search(pattern, line), line
    if out is not None:
        assert not out.exists(), line
        assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert tree_hash(*inputs) == before
    return line


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-step run of a 2-layer pixel DiT on a 12-subject phantom cohort (16^3), and its inputs."""
    from helpers import train_tiny_dit

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bad_cli")
    run, prep = train_tiny_dit(root)
    cohort, preset = root / "cohort", root / "p.yaml"  # written by train_tiny_dit
    from neurodit.sample import sample_diffusion

    syn = sample_diffusion(run, 4, root / "syn", steps=2, progress=False)
    # the training subjects on the run's grid (as the demo writes its real reference): a "held-out" set
    # that is not held out
    from neurodit.data.prepare import load_prepared

    p = load_prepared(prep)
    seen = root / "seen"
    seen.mkdir()
    for i, pid in enumerate(p.table["participant_id"]):
        p.to_nifti(p.volumes[i], seen / f"{pid}.nii.gz")
    p.table[["participant_id", "sex"]].to_csv(seen / "participants.tsv", sep="\t", index=False)
    return {"root": root, "cohort": cohort, "prep": prep, "preset": preset, "run": run, "syn": syn,
            "seen": seen}


def _syn_cohort(out: Path, vols: np.ndarray, affine: np.ndarray, meta: dict | None = None) -> Path:
    from neurodit.data.synthetic import write_synthetic_cohort

    return write_synthetic_cohort(vols, {"sex": ["F", "M"] * (len(vols) // 2)}, affine, out, meta=meta or {})


def _volumes(cohort: Path):
    from neurodit.data.cohort import load_volumes, read_cohort

    return load_volumes(read_cohort(cohort), grid=None)


# --------------------------------------------------------------------------- evaluate
def test_evaluate_volumes_on_different_grids(tmp_path):
    real = write_tiny_cohort(tmp_path / "real", n=4)
    other = write_tiny_cohort(tmp_path / "other", n=4, shape=(20, 24, 20))
    vols, grid = _volumes(other)
    syn = _syn_cohort(tmp_path / "syn", vols, grid.affine)
    out = tmp_path / "eval"
    run_cli(["evaluate", "--real", real, "--synthetic", syn, "--out", out], [real, syn],
            r"grid shape differs from the real folder's sub-0001_md.nii.gz .*\(20x24x20 vs 24x28x24\)",
            "syn-000001.nii.gz", out)


def test_evaluate_synthetic_ids_collide_with_real(tmp_path):
    real = write_tiny_cohort(tmp_path / "real", n=4)
    fake = write_tiny_cohort(tmp_path / "fake", n=4, seed=3)  # "synthetic" folder with sub-* ids
    out = tmp_path / "eval"
    run_cli(["evaluate", "--real", real, "--synthetic", fake, "--out", out], [real, fake],
            r"4 synthetic participant_id\(s\) equal real ones in .*real, e\.g\. sub-0001",
            str(fake / "participants.tsv"), out)


def test_evaluate_oblique_volume_refused_clearly(tmp_path):
    # evaluate does not resample: an oblique (or otherwise different) affine must be prepared first
    real = write_tiny_cohort(tmp_path / "real", n=4)
    _write_oblique(real / "sub-0003_md.nii.gz", degrees=10.0)
    out = tmp_path / "eval"
    vols, grid = _volumes(write_tiny_cohort(tmp_path / "src", n=4))
    syn = _syn_cohort(tmp_path / "syn", vols, grid.affine)
    run_cli(["evaluate", "--real", real, "--synthetic", syn, "--out", out], [real, syn],
            r"affine differs from sub-0001_md.nii.gz \(inputs must share one grid; run prepare to resample\)",
            "sub-0003_md.nii.gz", out)


def _rotation(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    r = np.eye(4)
    r[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]  # about the z (inferior-superior) axis
    return r


def _write_oblique(path: Path, degrees: float) -> None:
    """Rewrite ``path`` with the same brain in the world stored on an oblique (rotated) voxel grid."""
    import nibabel as nib

    from helpers import BRAIN_CENTRE_MM, tiny_md_volume

    img = nib.load(path)
    centre = np.eye(4)
    centre[:3, 3] = BRAIN_CENTRE_MM
    aff = centre @ _rotation(degrees) @ np.linalg.inv(centre) @ img.affine  # rotate about the brain centre
    vol = tiny_md_volume(img.shape, aff, np.random.default_rng(0), noise=0.0)
    nib.save(nib.Nifti1Image(vol, aff), path)


def test_prepare_resamples_oblique_affines(tmp_path):
    """Decision (README "Reliability"): prepare resamples any affine, oblique included, onto the RAS grid
    (no registration); the oblique copy of a brain lands where the straight one does."""
    import nibabel as nib

    from helpers import tiny_md_volume

    straight = write_tiny_cohort(tmp_path / "straight", n=2)
    oblique = tmp_path / "oblique"
    shutil.copytree(straight, oblique)
    for d in (straight, oblique):  # the same noise-free brain in both, so only the storage grid differs
        img = nib.load(d / "sub-0002_md.nii.gz")
        nib.save(nib.Nifti1Image(tiny_md_volume(img.shape, img.affine, np.random.default_rng(0), noise=0.0),
                                 img.affine), d / "sub-0002_md.nii.gz")
    _write_oblique(oblique / "sub-0002_md.nii.gz", degrees=15.0)
    outs = []
    for d in (straight, oblique):
        res = CliRunner().invoke(app, ["prepare", str(d), "--out", str(tmp_path / f"p-{d.name}"),
                                       "--shape", "24", "28", "24"])
        assert res.exit_code == 0, res.output
        outs.append(np.load(tmp_path / f"p-{d.name}" / "volumes.npy")[1])
    a, b = outs
    r = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    assert r > 0.9, r  # measured 0.95 at 15 degrees (8 mm voxels: the interpolation blur of one rotation)


def test_evaluate_refuses_heldout_from_the_generators_training_set(trained):
    # REAL_DIR = the very cohort the run was trained on: every "held-out" subject was seen in training
    out = trained["root"] / "eval-leak"
    line = run_cli(["evaluate", "--real", trained["seen"], "--synthetic", trained["syn"], "--out", out],
                   [trained["seen"], trained["syn"], trained["run"]],
                   r"12 held-out participant\(s\) were in the generator's training set, e\.g\. sub-\S+ "
                   r"\(training set: .*run/train_participants\.tsv\)", str(trained["seen"]), out)
    assert "never saw" in line


def test_evaluate_refuses_heldout_from_a_baselines_training_set(tmp_path):
    train = write_tiny_cohort(tmp_path / "train", n=4)
    base = tmp_path / "base"
    res = CliRunner().invoke(app, ["baseline", str(train), "--kind", "mean", "--n", "4", "--out", str(base)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "eval"
    run_cli(["evaluate", "--real", train, "--synthetic", base, "--out", out], [train, base],
            r"4 held-out participant\(s\) were in the generator's training set, e\.g\. sub-0001",
            str(train), out)


# --------------------------------------------------------------------------- train --init
def _train_args(trained, init: Path | str, out: Path) -> list:
    return ["train", trained["prep"], "--out", out, "--preset", trained["preset"], "--init", init,
            "--max-steps", "1", "--batch-size", "2"]


# train creates its run folder before it builds the model (neurodit.train.loop.train_diffusion): a bad --init
# is refused with one line and exit 2, but an empty "started" run folder is left until the generators
# branch builds the model first (see the lead's merge notes).


def _init_case(trained, tmp_path, init, pattern, filename, inputs=()):
    out = tmp_path / "run"
    try:
        run_cli(_train_args(trained, init, out), [trained["prep"], *inputs], pattern, filename, None)
    finally:
        left = out.exists()
    assert not left, "a half-made run folder was left"


def test_init_missing(trained, tmp_path):
    _init_case(trained, tmp_path, tmp_path / "nope.safetensors",
               r"not found \(neither a local folder nor a hub id", "nope.safetensors")


def test_init_truncated_safetensors(trained, tmp_path):
    from safetensors.torch import save_file

    from neurodit.runs import TrainedRun

    model = TrainedRun(trained["run"], torch.device("cpu")).model  # a diffusers-format state dict
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("pos_embed.pos_embed")},
              tmp_path / "w.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((tmp_path / "w.safetensors").read_bytes()[:-100])
    _init_case(trained, tmp_path, cut, r"truncated or corrupt safetensors file", "cut.safetensors", [cut])


def test_init_wrong_architecture(trained, tmp_path):
    from safetensors.torch import save_file

    from neurodit.models import build_dit, load_preset

    wide = load_preset(str(trained["preset"]), {"attention_head_dim": 8})  # width 16 instead of 32
    sd = {k: v for k, v in build_dit(wide, 2).state_dict().items() if not k.endswith("pos_embed.pos_embed")}
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "other.safetensors")
    _init_case(trained, tmp_path, tmp_path / "other.safetensors",
               r"source DiT has width=16 but the preset needs 32", "other.safetensors")


def test_init_malicious_pickle_runs_nothing(trained, tmp_path):
    marker = tmp_path / "pwned"
    evil = malicious(tmp_path / "evil.pt", marker)
    try:
        _init_case(trained, tmp_path, evil, r"refused to load with weights_only=True: the pickle would import",
                   "evil.pt", [evil])
    finally:
        assert not marker.exists()


def test_init_malicious_pickle_exit_2_and_runs_nothing(trained, tmp_path):
    # the guarantee that holds today: exit 2, one line, the payload never runs (see HALF for the folder)
    marker = tmp_path / "pwned"
    evil = malicious(tmp_path / "evil.pt", marker)
    run_cli(_train_args(trained, evil, tmp_path / "run"), [trained["prep"], evil],
            r"refused to load with weights_only=True: the pickle would import io\.open", "evil.pt")
    assert not marker.exists()


def test_encoder_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = malicious(tmp_path / "enc.pt", marker)
    real = write_tiny_cohort(tmp_path / "real", n=4)
    vols, grid = _volumes(write_tiny_cohort(tmp_path / "src", n=4, seed=2))
    syn = _syn_cohort(tmp_path / "syn", vols, grid.affine)
    out = tmp_path / "eval"
    run_cli(["evaluate", "--real", real, "--synthetic", syn, "--out", out, "--encoder", evil,
             "--c2st-views", "voxel"], [real, syn, evil], r"not a TorchScript archive nor safetensors", "enc.pt",
            out)
    assert not marker.exists()


# --------------------------------------------------------------------------- sample
@pytest.mark.parametrize("args,pattern", [
    (["--n", "0"], r"--n must be >= 1, got 0"),
    (["--n", "2", "--steps", "-3"], r"--steps and --batch-size must be >= 1, got -3"),
    (["--n", "2", "--guidance", "nan"], r"--guidance must be a finite number >= 0 .*got nan"),
])
def test_sample_bad_arguments(trained, tmp_path, args, pattern):
    out = tmp_path / "syn"
    run_cli(["sample", trained["run"], "--out", out, *args], [trained["run"]], pattern, "", out)


@pytest.mark.parametrize("remove", ["model", "labels.json"])
def test_sample_run_folder_missing_files(trained, tmp_path, remove):
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run, ignore=shutil.ignore_patterns("checkpoints", "cache", "logs"))
    target = run / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    out = tmp_path / "syn"
    want = "model/config.json" if remove == "model" else "labels.json"
    run_cli(["sample", run, "--n", "2", "--out", out], [run],
            rf"not a finished neurodit run \(missing .*{re.escape(want)}", str(run), out)


def test_sample_run_folder_missing_weights(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run, ignore=shutil.ignore_patterns("checkpoints", "cache", "logs"))
    for w in (run / "model").glob("*.safetensors"):
        w.unlink()
    out = tmp_path / "syn"
    run_cli(["sample", run, "--n", "2", "--out", out], [run], r"no weights", "model", out)


# --------------------------------------------------------------------------- full disk / unwritable output
def _fail_on(monkeypatch, code: int, when) -> None:
    """Make ``os.replace`` (every atomic write's last step) raise ``OSError(code)`` when ``when(src)``."""
    real_replace = os.replace

    def replace(src, dst, *a, **kw):
        if when(str(src)):
            raise OSError(code, os.strerror(code), str(src))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_disk_while_writing_a_file(tmp_path, monkeypatch, code):
    cohort = write_tiny_cohort(tmp_path / "cohort", n=3)
    out = tmp_path / "prep"
    _fail_on(monkeypatch, code, lambda src: src.endswith(".tmp") and "volumes" not in src)
    line = run_cli(["prepare", cohort, "--out", out, "--shape", "8", "10", "8"], [cohort],
                   re.escape(os.strerror(code)) + r" \(no output was written\)", str(out), out)
    assert ".partial" not in line and ".tmp" not in line  # the user's path, not our temporary sibling


def test_unwritable_output_folder(tmp_path, monkeypatch):
    cohort = write_tiny_cohort(tmp_path / "cohort", n=3)
    out = tmp_path / "prep"
    _fail_on(monkeypatch, errno.EACCES, lambda src: src.endswith(".partial"))  # the final rename into place
    run_cli(["prepare", cohort, "--out", out, "--shape", "8", "10", "8"], [cohort],
            r"Permission denied \(no output was written\)", str(out), out)


def test_unwritable_output_keeps_previous_result(tmp_path, monkeypatch):
    cohort = write_tiny_cohort(tmp_path / "cohort", n=3)
    out = tmp_path / "prep"
    assert CliRunner().invoke(app, ["prepare", str(cohort), "--out", str(out), "--shape", "8", "10", "8"]
                              ).exit_code == 0
    before = tree_hash(out)
    _fail_on(monkeypatch, errno.EACCES, lambda src: src.endswith(".partial"))
    res = CliRunner().invoke(app, ["prepare", str(cohort), "--out", str(out), "--shape", "8", "10", "8",
                                   "--overwrite"])
    assert res.exit_code == 2 and "Permission denied" in res.stderr
    assert tree_hash(out) == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".prep.")]

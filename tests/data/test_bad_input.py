"""Every bad input of the data layer through the CLI: exit code 2, ONE stderr line naming the file and the
problem, and no output folder (nor a hidden partial one) left behind."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import tiny_affine, tiny_md_volume, write_tiny_cohort
from neurodit.cli import app

N = 3
SHAPE = ["--shape", "8", "10", "8"]


def _cohort(tmp: Path, **kw) -> Path:
    kw.setdefault("n", N)
    return write_tiny_cohort(tmp / "cohort", **kw)


def _save(path: Path, arr: np.ndarray, affine: np.ndarray | None = None) -> None:
    nib.save(nib.Nifti1Image(arr.astype(np.float32), np.eye(4) if affine is None else affine), path)


def _edit_table(d: Path, fn) -> None:
    lines = (d / "participants.tsv").read_text().splitlines()
    (d / "participants.tsv").write_text("\n".join(fn(lines)) + "\n")


def _vol(d: Path, name: str = "sub-0002_md.nii.gz") -> tuple[Path, np.ndarray, np.ndarray]:
    img = nib.load(d / name)
    return d / name, np.asarray(img.dataobj), img.affine


# Each case: build a bad cohort in tmp, return (data_dir, extra CLI args). Expected (problem regex,
# the file the line must name).
def truncated_gz(t):
    d = _cohort(t)
    p = d / "sub-0002_md.nii.gz"
    p.write_bytes(p.read_bytes()[: 300])
    return d


def random_bytes(t):
    d = _cohort(t)
    (d / "sub-0002_md.nii.gz").unlink()
    (d / "sub-0002_md.nii").write_bytes(np.random.default_rng(0).bytes(4000))
    return d


def truncated_nii(t):
    d = _cohort(t, gz=False)
    p = d / "sub-0002_md.nii"
    p.write_bytes(p.read_bytes()[:1000])
    return d


def volume_2d(t):
    d = _cohort(t)
    p, v, a = _vol(d)
    _save(p, v[:, :, 12], a)
    return d


def volume_4d(t):
    d = _cohort(t)
    p, v, a = _vol(d)
    _save(p, np.stack([v, v, v], axis=-1), a)
    return d


def nan_voxels(t):
    d = _cohort(t)
    p, v, a = _vol(d)
    v = v.copy()
    v[3, 4, 5] = np.nan
    _save(p, v, a)
    return d


def inf_voxels(t):
    d = _cohort(t)
    p, v, a = _vol(d)
    v = v.copy()
    v[10, 10, 10] = np.inf
    _save(p, v, a)
    return d


def all_zero(t):
    d = _cohort(t)
    p, v, a = _vol(d)
    _save(p, np.zeros_like(v), a)
    return d


def wrong_units(t):  # µm²/ms = 1000 x mm²/s
    d = _cohort(t)
    p, v, a = _vol(d)
    _save(p, v * 1000.0, a)
    return d


def not_mni_space(t):  # origin 400 mm away: no overlap with the MNI152 brain
    d = _cohort(t)
    p, v, a = _vol(d)
    a = a.copy()
    a[:3, 3] += 400.0
    _save(p, v, a)
    return d


def missing_table(t):
    d = _cohort(t)
    (d / "participants.tsv").unlink()
    return d


def missing_id_column(t):
    d = _cohort(t)
    _edit_table(d, lambda ls: [ls[0].replace("participant_id", "subject")] + ls[1:])
    return d


def comma_separated(t):
    d = _cohort(t)
    _edit_table(d, lambda ls: [ln.replace("\t", ",") for ln in ls])
    return d


def ragged_table(t):
    d = _cohort(t)
    _edit_table(d, lambda ls: ls[:2] + [ls[2] + "\textra"] + ls[3:])
    return d


def header_only(t):
    d = _cohort(t)
    _edit_table(d, lambda ls: ls[:1])
    return d


def duplicate_id(t):
    d = _cohort(t)
    _edit_table(d, lambda ls: ls + [ls[2]])
    return d


def duplicate_id_session(t):
    d = _cohort(t, sessions=2)
    _edit_table(d, lambda ls: ls + [ls[3]])
    return d


def file_without_row(t):
    d = _cohort(t)
    _save(d / "sub-0099_md.nii.gz", tiny_md_volume((24, 28, 24), tiny_affine((24, 28, 24), 8.0),
                                                   np.random.default_rng(1)), tiny_affine((24, 28, 24), 8.0))
    return d


def row_without_file(t):
    d = _cohort(t)
    (d / "sub-0003_md.nii.gz").unlink()
    return d


def path_column_missing_file(t):
    d = _cohort(t, path_column=True)
    (d / "maps" / "sub-0001_md.nii.gz").unlink()
    return d


def sessions_without_session_column(t):
    d = _cohort(t, sessions=2)
    _edit_table(d, lambda ls: ["\t".join(ln.split("\t")[:1] + ln.split("\t")[2:]) for ln in ls[:1] + ls[1::2]])
    return d


def unknown_sex(t):
    d = _cohort(t)
    _edit_table(d, lambda ls: [ls[0], ls[1].replace("\tF\t", "\tX\t")] + ls[2:])
    return d


def unknown_diagnosis(t):
    d = _cohort(t, diagnosis=True)
    _edit_table(d, lambda ls: ls[:2] + [ls[2].replace("\tCN", "\tDementia")] + ls[3:])
    return d


def bad_age(t):
    d = _cohort(t)
    _edit_table(d, lambda ls: ls[:3] + ["\t".join(ls[3].split("\t")[:2] + ["old"])] + ls[4:])
    return d


def empty_folder(t):
    d = t / "cohort"
    d.mkdir()
    return d


def no_such_folder(t):
    return t / "nowhere"


def too_few_subjects(t):
    return _cohort(t, n=1, sessions=2)  # one participant, two scans


CASES = [
    (truncated_gz, r"not a readable NIfTI", "sub-0002_md.nii.gz"),
    (random_bytes, r"not a readable NIfTI", "sub-0002_md.nii"),
    (truncated_nii, r"not a readable NIfTI", "sub-0002_md.nii"),
    (volume_2d, r"2D volume \(shape 24x28\), expected 3D", "sub-0002_md.nii.gz"),
    (volume_4d, r"4D volume \(shape 24x28x24x3\), expected 3D", "sub-0002_md.nii.gz"),
    (nan_voxels, r"1 NaN/Inf voxels", "sub-0002_md.nii.gz"),
    (inf_voxels, r"1 NaN/Inf voxels", "sub-0002_md.nii.gz"),
    (all_zero, r"volume is all zero", "sub-0002_md.nii.gz"),
    (wrong_units, r"not in mm²/s", "sub-0002_md.nii.gz"),
    (not_mni_space, r"cover only 0% of the MNI152 brain", "sub-0002_md.nii.gz"),
    (missing_table, r"missing participants.tsv \(found 3 NIfTI files\)", "participants.tsv"),
    (missing_id_column, r"missing required column participant_id", "participants.tsv"),
    (comma_separated, r"missing required column participant_id .*comma-separated", "participants.tsv"),
    (ragged_table, r"not a readable tab-separated table .*Expected 3 fields in line 3, saw 4", "participants.tsv"),
    (header_only, r"table has no rows", "participants.tsv"),
    (duplicate_id, r"duplicate participant_id sub-0002 on lines 3 and 5", "participants.tsv"),
    (duplicate_id_session, r"duplicate participant_id sub-0002 session ses-01 on lines 4 and 8",
     "participants.tsv"),
    (file_without_row, r"file has no row in participants.tsv", "sub-0099_md.nii.gz"),
    (row_without_file, r"line 4 \(sub-0003\): row has no file", "participants.tsv"),
    (path_column_missing_file, r"row has no file: path 'maps/sub-0001_md.nii.gz' does not exist",
     "participants.tsv"),
    (sessions_without_session_column, r"several files match \(sub-0001_ses-01_md.nii.gz, sub-0001_ses-02",
     "participants.tsv"),
    (unknown_sex, r"line 2 \(sub-0001\): unknown sex label 'X' \(expected M/F\)", "participants.tsv"),
    (unknown_diagnosis, r"unknown diagnosis label 'Dementia' \(expected AD/CN/MCI\)", "participants.tsv"),
    (bad_age, r"age 'old' is not a number", "participants.tsv"),
    (empty_folder, r"cohort folder is empty", "cohort"),
    (no_such_folder, r"cohort folder not found", "nowhere"),
    (too_few_subjects, r"too few subjects: 1 participant\(s\), need at least 2", "participants.tsv"),
]


def _assert_one_error_line(res, pattern: str, filename: str) -> str:
    import re

    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("error: ")
    assert filename in line, line
    assert re.search(pattern, line), line
    assert res.stdout == ""
    return line


@pytest.mark.parametrize("make,pattern,filename", CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_input_exit_2_one_line_no_output(tmp_path, make, pattern, filename):
    data_dir = make(tmp_path)
    out = tmp_path / "prep"
    res = CliRunner().invoke(app, ["prepare", str(data_dir), "--out", str(out), *SHAPE])
    _assert_one_error_line(res, pattern, filename)
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".prep")]  # no partial folder


def test_existing_non_empty_output_is_left_untouched(tmp_path):
    data_dir = _cohort(tmp_path)
    out = tmp_path / "prep"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = CliRunner().invoke(app, ["prepare", str(data_dir), "--out", str(out), *SHAPE])
    _assert_one_error_line(res, r"output folder exists and is not empty \(pass --overwrite", "prep")
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_failure_midway_keeps_previous_result(tmp_path):
    # A good result, then a re-run with --overwrite on a cohort whose last file is corrupt: the
    # previous complete result must survive.
    data_dir = _cohort(tmp_path)
    out = tmp_path / "prep"
    assert CliRunner().invoke(app, ["prepare", str(data_dir), "--out", str(out), *SHAPE]).exit_code == 0
    before = (out / "volumes.npy").read_bytes()
    p = data_dir / "sub-0003_md.nii.gz"
    p.write_bytes(p.read_bytes()[:200])
    res = CliRunner().invoke(app, ["prepare", str(data_dir), "--out", str(out), "--overwrite", *SHAPE])
    _assert_one_error_line(res, r"not a readable NIfTI", "sub-0003_md.nii.gz")
    assert (out / "volumes.npy").read_bytes() == before
    assert not [q.name for q in tmp_path.iterdir() if q.name.startswith(".prep")]


def test_bad_grid_arguments(tmp_path):
    data_dir = _cohort(tmp_path)
    res = CliRunner().invoke(app, ["prepare", str(data_dir), "--out", str(tmp_path / "p"), "--shape", "0", "8", "8"])
    _assert_one_error_line(res, r"--shape must be three positive integers", "")
    res = CliRunner().invoke(app, ["prepare", str(data_dir), "--out", str(tmp_path / "p"), "--voxel-size", "-1"])
    _assert_one_error_line(res, r"--voxel-size must be one or three positive numbers", "")
    assert not (tmp_path / "p").exists()


def test_conflicting_duplicate_participant_rows(tmp_path):
    # two sessions of one participant are one person: their sex cannot differ
    d = _cohort(tmp_path, sessions=2)
    _edit_table(d, lambda ls: ls[:2] + [ls[2].replace("\tF\t", "\tM\t")] + ls[3:])
    out = tmp_path / "prep"
    res = CliRunner().invoke(app, ["prepare", str(d), "--out", str(out), *SHAPE])
    _assert_one_error_line(res, r"conflicting rows for participant_id sub-0001: sex F on line 2 but M on line 3",
                           "participants.tsv")
    assert not out.exists()


def test_lower_case_and_space_padded_labels_are_accepted(tmp_path):
    d = _cohort(tmp_path, diagnosis=True)
    spell = {"F": [" f ", "female"], "M": ["male", " M"]}
    def edit(ls):
        rows = [ls[0]]
        for k, ln in enumerate(ls[1:]):
            cells = ln.split("\t")
            cells[1] = spell[cells[1]][k % 2]  # sex
            cells[3] = " " + cells[3].lower()  # diagnosis: " cn", " ad"
            rows.append("\t".join(cells))
        return rows
    _edit_table(d, edit)
    from neurodit.data.cohort import read_cohort

    t = read_cohort(d).table
    assert list(t["sex"]) == ["F", "M", "F"] and set(t["diagnosis"]) <= {"CN", "AD"}
    res = CliRunner().invoke(app, ["prepare", str(d), "--out", str(tmp_path / "prep"), *SHAPE])
    assert res.exit_code == 0, res.output


def test_100k_row_table_names_the_bad_line(tmp_path):
    """A bad label on line 73,457 of a 100k-row table: one error line naming it (no wall-clock bound here:
    timings live in `neurodit bench`; pytest-timeout stops a pathological one)."""
    d = tmp_path / "big"
    d.mkdir()
    rows = ["participant_id\tsex\tage\tdiagnosis"]
    rows += [f"sub-{i:06d}\t{'FM'[i % 2]}\t{20 + i % 60}\tCN" for i in range(1, 100_001)]
    bad = 73_457  # file line (header = line 1)
    rows[bad - 1] = rows[bad - 1].replace("\tCN", "\tDementia")
    (d / "participants.tsv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "prep"
    res = CliRunner().invoke(app, ["prepare", str(d), "--out", str(out), *SHAPE])
    _assert_one_error_line(res, rf"line {bad} \(sub-{bad - 1:06d}\): unknown diagnosis label 'Dementia'",
                           "participants.tsv")
    assert not out.exists()


@pytest.mark.slow
def test_100k_rows_and_files_read_in_linear_time(tmp_path, monkeypatch):
    """read_cohort of 100k rows x 100k files (empty files: only names are matched here) -- rows find their
    files through a prefix index, not a rows x files scan: each row asks the index a bounded number of
    prefixes (counted; no wall-clock bound here: timings live in `neurodit bench`)."""
    from neurodit.data import cohort as cohort_mod
    from neurodit.data.cohort import read_cohort

    calls = []
    real_prefixes = cohort_mod._prefixes
    monkeypatch.setattr(cohort_mod, "_prefixes", lambda pid, ses: calls.append(pid) or real_prefixes(pid, ses))

    d = tmp_path / "big"
    d.mkdir()
    n = 100_000
    rows = ["participant_id\tsex"]
    for i in range(1, n + 1):
        rows.append(f"sub-{i:06d}\t{'FM'[i % 2]}")
        (d / f"sub-{i:06d}_md.nii.gz").touch()
    (d / "participants.tsv").write_text("\n".join(rows) + "\n")
    cohort = read_cohort(d)
    assert len(cohort) == n and cohort.paths[-1].name == f"sub-{n:06d}_md.nii.gz"
    assert len(calls) <= 2 * n and len(real_prefixes("sub-000001", None)) <= 3  # index look-ups per row: bounded

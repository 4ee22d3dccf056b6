"""End to end: `neurodit demo --quick` runs every stage and the report carries their numbers."""

from __future__ import annotations

import html
import json
import shlex

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from neurodit.cli import app

STAGES = ("phantom", "split", "prepare", "tile", "train", "sample", "evaluate", "downstream", "compare", "report")


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--quick"])
    assert result.exit_code == 0, result.output
    # one summary line and one re-run command per stage
    for stage in STAGES:
        assert f"[{stage}]" in result.output
    assert result.output.count("re-run: neurodit ") == len(STAGES)

    demo = json.loads((out / "demo.json").read_text())
    assert set(demo["timings_s"]) == set(STAGES)
    # downstream ran as a child process beside evaluate and compare (its own log), and finished before the report
    assert demo["overlapped"] == ["downstream"] and (out / "downstream.log").is_file()
    assert 0 < demo["wall_s"] <= sum(demo["timings_s"].values()) + 5
    # every printed command is a valid call of the CLI: its options parse (the data stages' commands
    # are run for real in test_demo_data_commands_recreate_its_folders)
    group = typer.main.get_command(app)
    for line in demo["commands"].values():
        for command in line.split("; "):
            argv = shlex.split(command)
            assert argv[0] == "neurodit", command
            group.commands[argv[1]].make_context(argv[1], argv[2:])
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 0 and "torch" in run["versions"]

    # held-out subjects never trained the generator (split by participant)
    train_ids = set(pd.read_csv(out / "real_train/participants.tsv", sep="\t")["participant_id"])
    held_ids = set(pd.read_csv(out / "real_heldout/participants.tsv", sep="\t")["participant_id"])
    assert train_ids and held_ids and not train_ids & held_ids

    # synthetic cohort: NIfTI in mm²/s on the prepared grid, balanced by sex, flagged synthetic
    syn = pd.read_csv(out / "synthetic/participants.tsv", sep="\t")
    assert len(syn) == demo["config"]["n_synthetic"]
    assert (syn["synthetic"] == 1).all() and abs((syn["sex"] == "F").sum() - (syn["sex"] == "M").sum()) <= 1
    assert not set(syn["participant_id"]) & (train_ids | held_ids)
    prep = json.loads((out / "prep_train/prepare.json").read_text())
    img = nib.load(next((out / "synthetic").glob("*.nii.gz")))
    assert list(img.shape) == list(prep["grid"]["shape"])
    np.testing.assert_allclose(img.affine, np.asarray(prep["grid"]["affine"]), atol=1e-6)
    vol = np.asarray(img.dataobj)
    assert np.isfinite(vol).all() and 0.0 <= vol.min() and vol.max() <= 4.0e-3 + 1e-9

    # the report holds the evaluation's and the downstream experiment's numbers
    page = html.unescape((out / "report.html").read_text())
    metrics = json.loads((out / "eval/metrics.json").read_text())
    for pair in ("real_real", "real_syn", "syn_syn"):
        m = metrics["msssim"][pair]["mean"]
        assert -1.0 <= m <= 1.0
        assert f"{m:.3f}" in page or f"{m:.4f}" in page, pair
    results = json.loads((out / "downstream/results.json").read_text())
    assert len(results["arms"]) == 6
    for comp in results["comparisons"]:
        assert comp["verdict"] in page
    assert page.count("data:image/png;base64,") >= 5  # mosaics, histograms, loss, downstream plots...
    # the judge leads the summary: the C2ST verdict first, then the calibration panel of reference generators
    assert set(metrics["calibration"]) >= {"model", "pca", "noise", "copy", "mean"}
    summary = page[page.index('id="summary"'):]
    assert summary.index(metrics["c2st"]["verdict"]) < summary.index("Calibration panel")  # page is unescaped
    # the generators side by side, each row labelled with its budget
    cmp = json.loads((out / "compare/comparison.json").read_text())
    assert [r["label"] for r in cmp["rows"]] == ["dit", "pca"]  # no untrained row (the 3D UNet: --full only)
    assert all(r["budget"] for r in cmp["rows"])
    # the DiT's samples judged once: compare copied the evaluate stage's folder, numbers and all
    assert cmp["eval_reuse"] == {"synthetic": {"from": str(out / "eval"), "reused": True, "why_not": None}}
    assert json.loads((out / "compare/eval-synthetic/metrics.json").read_text()) == metrics
    assert cmp["rows"][0]["quality"]["c2st"]["cnn"]["auc"] == metrics["c2st"]["views"]["cnn"]["auc"]
    assert cmp["summary"] in page


def _tree(root, swap=("", "")):
    """{relative file: bytes} under ``root`` (run records and timings left out; ``swap`` renames the
    root inside text files that record absolute paths)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in ("run.json", "prepare.json"):
            data = p.read_bytes()
            out[str(p.relative_to(root))] = data.replace(*(s.encode() for s in swap)) if p.suffix == ".tsv" else data
    return out


def test_demo_data_commands_recreate_its_folders(tmp_path):
    """Every command the demo prints for its data stages (phantom, split, prepare + export), run
    through the CLI into another folder, writes the same participants and the same files."""
    from neurodit.demo import _DemoRun, _phantoms, _prepare, _split, load_demo_config

    cfg = load_demo_config(quick=True, overrides={"n_camcan": 8, "n_adni": 4, "phantom_voxel_size": 8.0})
    demo, again = tmp_path / "demo", tmp_path / "again"
    lines = []
    run = _DemoRun(cfg, demo, lines.append)
    for step in (_phantoms, _split, _prepare):
        step(run)
    assert set(run.commands) == {"phantom", "split", "prepare"}
    for name, line in run.commands.items():
        for command in line.replace(str(demo), str(again)).split("; "):
            argv = shlex.split(command)
            assert argv[0] == "neurodit", command
            res = CliRunner().invoke(app, argv[1:])
            assert res.exit_code == 0, (name, command, res.output)
    held = pd.read_csv(demo / "camcan_heldout/participants.tsv", sep="\t")["participant_id"]
    assert len(held) == 2 and not set(held) & set(pd.read_csv(demo / "camcan_train/participants.tsv",
                                                              sep="\t")["participant_id"])
    folders = [k for k in run.d if (demo / k).exists()]
    assert {"camcan_train", "camcan_heldout", "real_train", "real_heldout", "adni_grid"} <= set(folders)
    for k in folders:
        assert _tree(again / k) == _tree(demo / k, (str(demo), str(again))), k


class _Stop(Exception):
    """Raised by a recorder on the CLI side: the command has made its one stage call."""


def _plain(value):
    """Arguments in comparable form: paths as strings, tuples as lists, dataclasses as dicts."""
    import dataclasses
    from pathlib import Path

    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def test_every_printed_command_makes_the_demos_own_calls(tmp_path, monkeypatch):
    """Each stage's printed command, run through the CLI, calls the stage function with the very
    arguments and resolved settings the demo used (stage functions replaced by recorders: nothing runs)."""
    import importlib
    import inspect

    from neurodit import demo
    from neurodit.downstream import resolve_config

    calls, on_cli = [], []

    def recorder(name, signature_of, result=None, normalise=None):
        sig = inspect.signature(signature_of)

        def record(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            calls.append((name, _plain((normalise or dict)(dict(bound.arguments)))))
            if on_cli:  # a command makes one stage call: stop it there
                raise _Stop
            return result
        return record

    def downstream_config(a):  # the keyword settings resolved into the one config they make
        a["config"] = resolve_config(a.pop("config"), arch=a.pop("arch"), folds=a.pop("folds"),
                                     seeds=a.pop("seeds"), **a.pop("settings"))
        a.pop("progress")
        return a

    def train_config(a):  # train_diffusion(cfg) in the demo, fit(prep_dir, cfg) in the CLI: the config decides
        return {"cfg": a["cfg"]}

    sample = importlib.import_module("neurodit.sample").sample_diffusion  # the CLI samples through the generator interface
    stages = [  # module, function, call name, signature, value the demo goes on with, normaliser
        ("neurodit.data.phantom", "make_phantom_cohort", "phantom", None, None, None),
        ("neurodit.data.split", "split_cohort", "split", None, ("train", "held"), None),
        ("neurodit.data.prepare", "prepare", "prepare", None, None, None),
        ("neurodit.data.prepare", "export_prepared", "export", None, None, None),
        ("neurodit.data.prepare", "load_prepared", "read", None, [0], None),
        ("neurodit.mosaic_files", "tile_file", "tile", None, None, None),
        ("neurodit.train", "train_diffusion", "train", None, None, train_config),
        ("neurodit.generators", "fit", "train", None, None, train_config),  # first: it resolves base's lazily
        ("neurodit.generators.base", "fit", "train", None, None, train_config),
        ("neurodit.sample", "sample_diffusion", "sample", None, None, None),
        ("neurodit.generators.base", "sample", "sample", sample, None, None),
        ("neurodit.metrics.evaluate", "evaluate", "evaluate", None, None, None),
        ("neurodit.metrics.schema", "read_metrics", "read", None, {"verdicts": {}}, None),
        ("neurodit.downstream", "run_downstream", "downstream", None, None, downstream_config),
        ("neurodit.compare", "compare", "compare", None, None, None),
        ("neurodit.compare", "read_comparison", "read", None, {"summary": ""}, None),
        ("neurodit.downstream.effect", "guidance_effect", "effect", None, None,
         lambda a: {k: v for k, v in a.items() if k != "progress"}),
        ("neurodit.downstream.effect", "read_effect", "read", None, {"verdict": "v."}, None),
        ("neurodit.downstream.sweep", "run_sweep", "sweep", None, None,
         lambda a: {k: v for k, v in a.items() if k != "progress"}),  # echo vs typer.echo: how, not what
        ("neurodit.downstream.sweep", "read_results", "read", None, {"verdicts": {"augment": [], "transfer": []}},
         None),
        ("neurodit.report", "build_report", "report", None, None, None),
    ]
    for module_name, attr, name, signature_of, result, normalise in stages:
        module = importlib.import_module(module_name)  # (neurodit.data re-exports functions over module names)
        monkeypatch.setattr(module, attr, recorder(name, signature_of or getattr(module, attr), result, normalise))

    # overlap off: the downstream stage is called here, not in a child process the recorders cannot reach (the
    # child runs this very printed command: test_demo_quick_end_to_end, test_a_failed_child_stage_names_its_log)
    cfg = demo.load_demo_config(quick=True, overrides={"seed": 3, "overlap": False, "sweep": "demo",
                                                                  "effect_guidance": [1, 2.5]})
    r = demo._DemoRun(cfg, tmp_path / "demo", lambda line: None)
    r.d["real_train"].mkdir(parents=True)
    (r.d["real_train"] / "sub-0001_md.nii.gz").touch()  # the volume tile picks
    for step in (demo._phantoms, demo._split, demo._prepare, demo._tile, demo._train, demo._sample,
                 demo._evaluate, demo._downstream, demo._compare, demo._effect, demo._sweep):
        before = set(r.commands)
        step(r)
        (stage,) = set(r.commands) - before
        made = [c for c in calls if c[0] != "read"]
        calls.clear()
        on_cli.append(True)
        for command in r.commands[stage].split("; "):
            res = CliRunner().invoke(app, shlex.split(command)[1:])
            assert isinstance(res.exception, _Stop), (command, res.output)
        on_cli.clear()
        assert [c for c in calls if c[0] != "read"] == made, stage
        calls.clear()


def test_a_failed_child_stage_names_its_log(tmp_path):
    """A stage run beside the others fails the demo with one line naming the stage, its exit code and its log."""
    from neurodit.demo import _DemoRun, load_demo_config
    from neurodit.errors import NeuroditError

    r = _DemoRun(load_demo_config(quick=True), tmp_path, lambda line: None)
    child = r.start("downstream", f"neurodit downstream --source {tmp_path / 'missing'} --out {tmp_path / 'ds'}",
                    "never printed")
    with pytest.raises(NeuroditError, match=r"the downstream stage failed \(exit 2\).*downstream\.log"):
        child.join()
    assert "downstream" not in r.timings and not (tmp_path / "ds").exists()


def test_untrained_generators_join_the_compare_in_full_only():
    """The 3D UNet makes noise at any CPU budget the default demo can give it: its row is in --full only,
    with a budget of the DiT's order (configs/demo/full.yaml)."""
    from neurodit.demo import load_demo_config

    for cfg in (load_demo_config(), load_demo_config(quick=True)):
        assert cfg.compare_generators == ["pca"] and "ddpm3d" not in cfg.generator_budgets
    full = load_demo_config(full=True)
    assert full.compare_generators == ["pca", "ddpm3d"] and full.generator_budgets["ddpm3d"]["max_steps"] == 1500
    # the sweep's 12 DiT fits do not fit the default demo's 10 minutes: --full runs it
    assert load_demo_config().sweep is None and full.sweep == "demo"
    assert load_demo_config().effect_guidance == [] and full.effect_guidance == [1, 1.5, 3, 5]

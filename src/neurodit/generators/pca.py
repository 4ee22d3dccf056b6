"""``pca``: the class-conditional PCA-Gaussian (Tipping & Bishop 1999 without the isotropic noise
term; :mod:`neurodit.generators.reference`) as a fitted generator with a run folder.

``fit`` maps the prepared volumes back to mm²/s (``neurodit.data.prepare.model_to_mm2s``), fits
``fit_reference(..., kind="pca")`` per class of ``cfg.label`` (the same classes as a diffusion run:
``neurodit.runs.make_labels``) and writes RUN_DIR atomically:

``generator.json`` (``pca``), ``train_config.yaml``, ``labels.json``, ``prepare.json`` (copy: grid,
normalisation), ``mask.npy``, ``model/config.json`` (kind, volume shape, components, class names) and
``model/reference.safetensors`` (no pickles): the training volumes (N, V) float32 mm²/s the Gaussian
spans, and per class k ``class<k>.index`` (n_c,) rows, ``class<k>.mean`` (V,), ``class<k>.coef``
(n_c, K) and ``class<k>.variances`` (K,) as ``fit_reference`` computed them. ``sample`` rebuilds the
``ReferenceModel`` from these arrays (no refit) and writes a synthetic cohort folder. There is nothing
to train step by step: ``--resume`` on a finished run returns it unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from neurodit.errors import NeuroditError
from neurodit.generators.base import with_inputs
from neurodit.io import atomic_dir, read_json, write_json

WEIGHTS = "reference.safetensors"
IDENTITY = ("label", "age_bins", "components", "prep_dir")  # what a pca run learns: --resume must agree


def _save_model(model, folder: Path, class_names: list[str]) -> None:
    from safetensors.numpy import save_file

    from neurodit.generators.reference import ReferenceModel

    if not isinstance(model, ReferenceModel):
        raise TypeError(f"expected a ReferenceModel, got {type(model).__name__}")
    tensors = model.to_arrays(class_names)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / WEIGHTS))
    write_json(folder / "config.json", {"kind": model.kind, "shape": list(model.shape),
                                        "components": model.components, "classes": class_names,
                                        "info": model.info()})


def load_model(run_dir: str | Path):
    """The fitted ``ReferenceModel`` of a pca RUN_DIR (arrays from safetensors; nothing refitted)."""
    from safetensors.numpy import load_file

    from neurodit.generators.reference import ReferenceModel

    folder = Path(run_dir) / "model"
    meta = read_json(folder / "config.json")
    try:
        arrays = load_file(str(folder / WEIGHTS))
        mask = np.load(Path(run_dir) / "mask.npy", allow_pickle=False)
        return ReferenceModel.from_arrays(meta["kind"], arrays, tuple(meta["shape"]), mask, meta["classes"],
                                          meta["components"])
    except (KeyError, OSError, ValueError) as exc:
        raise NeuroditError(f"cannot read the pca model: {exc}", folder) from exc


class PCAGenerator:
    name = "pca"
    sharded = False  # seconds on one CPU: under a multi-process launch the main process samples alone
    inputs = None  # no network, no input adapter: fitted here, not by neurodit.train
    recipe = None  # the preset's training recipe (its keys other than label / components are unused)

    def fit(self, prep_dir: str | Path, cfg: Any) -> Path:
        """Fit the class-conditional PCA-Gaussian on ``prep_dir`` (all components, or ``cfg.components``)
        and write ``cfg.out``; returns it."""
        import yaml

        from neurodit.config import to_dict
        from neurodit.data.prepare import load_prepared, model_to_mm2s
        from neurodit.generators.reference import fit_reference
        from neurodit.io import write_run_info
        from neurodit.runs import make_labels, read_generator, write_generator
        from neurodit.train.config import check_resume_identity

        cfg = with_inputs(cfg, prep_dir, self.name)
        run_dir = Path(cfg.out)
        if not cfg.out:
            raise NeuroditError("train: out must be set")
        now = to_dict(cfg)
        if cfg.resume:
            if not (run_dir / "model" / WEIGHTS).is_file() or read_generator(run_dir) != self.name:
                raise NeuroditError("--resume: no finished pca run to resume", run_dir)
            check_resume_identity(cfg, run_dir, IDENTITY)
            return run_dir  # a PCA fit has no steps: the finished run is the resumed one
        prep_dir = Path(prep_dir)
        prep = load_prepared(prep_dir)
        prep.require_one_map("the pca generator")
        labels, class_ids = make_labels(prep.table, cfg.label, cfg.age_bins, prep_dir / "participants.tsv")
        vols = model_to_mm2s(np.asarray(prep.volumes), prep.norm, prep.mask)  # (N, D, H, W) mm2/s
        names = list(labels.classes)
        model = fit_reference(vols, [names[i] for i in class_ids], prep.mask, "pca", cfg.components)
        with atomic_dir(run_dir, overwrite=cfg.overwrite) as tmp:
            write_generator(tmp, self.name)
            (tmp / "train_config.yaml").write_text(yaml.safe_dump(now, sort_keys=False))
            write_json(tmp / "labels.json", {**labels.to_dict(),
                                             "counts": np.bincount(class_ids, minlength=labels.num_classes)})
            shutil.copyfile(prep_dir / "prepare.json", tmp / "prepare.json")
            # the fitted participants, kept with the run (as a diffusion run keeps them): the leakage
            # check (neurodit.data.leakage) and the sweep's per-fraction audit read them
            shutil.copyfile(prep_dir / "participants.tsv", tmp / "train_participants.tsv")
            np.save(tmp / "mask.npy", np.asarray(prep.mask, dtype=bool))
            _save_model(model, tmp / "model", names)
            write_run_info(tmp, now, cfg.seed, generator=self.name, labels=labels.to_dict(),
                           reference=model.info(), steps_trained=0, train_seconds=None)
        return run_dir

    def sample(self, run_dir: str | Path, n: int | None, out: str | Path, *, label: Any = None,
               match: str | Path | None = None, seed: int = 0, overwrite: bool = False,
               **_diffusion_options: Any) -> Path:
        """``n`` volumes (balanced over the classes matching ``label``), or one per row of the ``match``
        table with its class (``neurodit.runs.plan_classes``), as a synthetic cohort ``out``.
        Diffusion-only options (steps, guidance, scheduler, ...) do not apply and are ignored."""
        from neurodit.data.grid import Grid
        from neurodit.data.synthetic import write_synthetic_cohort
        from neurodit.runs import LabelSpec, plan_classes

        run_dir = Path(run_dir)
        labels = LabelSpec.from_dict(read_json(run_dir / "labels.json"), run_dir / "labels.json")
        plan = plan_classes(labels, n, label=label, match=match)  # bad input: nothing loaded or written
        grid = Grid.from_dict(read_json(run_dir / "prepare.json")["grid"])
        model = load_model(run_dir)
        class_of = list(plan.class_of)
        # one seeded stream per class, drawn in the order of class_of (balanced, reproducible)
        streams = {k: model.iter_samples(class_of.count(k), labels.classes[k], seed=seed + k)
                   for k in sorted(set(class_of))}
        volumes = (next(streams[k])[0] for k in class_of)
        return write_synthetic_cohort(volumes, plan.columns(labels), grid.affine, out, overwrite=overwrite,
                                      map_name=read_json(run_dir / "prepare.json").get("map", "md"),
                                      seed=seed, avoid_ids=plan.avoid_ids,
                                      meta={"run_dir": str(run_dir.resolve()), "generator": self.name,
                                            "n": plan.n, "label": plan.wanted,
                                            "match": None if plan.match is None else str(plan.match.resolve())},
                                      classes=list(plan.counts(labels)), class_counts=plan.counts(labels))


GENERATOR = PCAGenerator()

"""The run folder (RUN_DIR, docs/ARCHITECTURE.md "Generative core"): what a trained generator leaves
behind for sampling, and the class labels it was trained on.

Files owned here (written by :func:`write_run_files`, read by :class:`TrainedRun`):
``train_config.yaml`` (resolved config, incl. the diffusion process), ``labels.json``
(:class:`LabelSpec` + class counts), ``prepare.json`` (copy: grid + normalisation), ``mask.npy``
(brain mask: sampled voxels outside it are 0 mm²/s), ``tiling.json`` (:class:`~neurodit.tiling.TilingSpec`)
and ``preset.json`` (the network's config, whatever the generator's input adapter saves: a resolved
:class:`~neurodit.models.ModelPreset` for ``dit``, the :class:`~neurodit.models.unet3d.UNet3DConfig` for
``ddpm3d``), and ``generator.json`` (which registered generator wrote the run; a run without it is a
``neurodit.generators.registry.DEFAULT`` run, as all runs were before there were others). The model weights
(``model/``), checkpoints, cache and logs belong to the training loop (``neurodit.train``) or to the
generator (``neurodit.generators``). :func:`is_run_folder` says whether a folder is a run at all.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from neurodit.errors import NeuroditError
from neurodit.io import atomic_write_text, read_json, write_json
from neurodit.run_folder import (  # the run folder's names, re-exported (__all__)
    FINISHED_RUN_FILES,
    GENERATOR_FILE,
    RUN_FILES,
    is_run_folder,
    read_generator,
    write_generator,
)

AGE_BIN = "age_bin"


@dataclass(frozen=True)
class LabelSpec:
    """Class labels of a run: ``columns`` combined into ``classes`` (index order); null = len(classes).

    ``label`` is the user's spelling (``"sex"``, ``"diagnosis"``, ``"sex*age_bin"``); ``age_bins`` are
    the age edges in years used for an ``age_bin`` column (bins ``<e0``, ``e0-e1``, ..., ``>=ek``).
    """

    label: str
    columns: tuple[str, ...]
    classes: tuple[str, ...]
    age_bins: tuple[float, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def null_class(self) -> int:
        return len(self.classes)

    def class_values(self, k: int) -> dict[str, str]:
        """Column values of class ``k``, e.g. ``{"sex": "F", "age_bin": "50-70"}``."""
        return dict(zip(self.columns, self.classes[k].split("|"), strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "columns": list(self.columns), "classes": list(self.classes),
                "null_class": self.null_class, "age_bins": list(self.age_bins)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str | Path | None = None) -> LabelSpec:
        try:
            return cls(label=str(d["label"]), columns=tuple(d["columns"]), classes=tuple(d["classes"]),
                       age_bins=tuple(float(a) for a in d.get("age_bins", ())))
        except (KeyError, TypeError) as exc:
            raise NeuroditError(f"labels.json: missing or bad key {exc}", where) from exc

    def select(self, wanted: dict[str, str], where: str = "--label") -> list[int]:
        """Class indices whose column values match every ``col=value`` in ``wanted``."""
        for col in wanted:
            if col not in self.columns:
                raise NeuroditError(f"{where}: '{col}' is not a label column of this run "
                                    f"(columns: {', '.join(self.columns)})")
        hits = [k for k in range(self.num_classes)
                if all(self.class_values(k)[c] == str(v) for c, v in wanted.items())]
        if not hits:
            raise NeuroditError(f"{where}: no class matches {wanted} (classes: {', '.join(self.classes)})")
        return hits


def age_bin_names(edges: tuple[float, ...]) -> list[str]:
    def f(x: float) -> str:
        return f"{x:g}"

    names = [f"<{f(edges[0])}"]
    names += [f"{f(a)}-{f(b)}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    names.append(f">={f(edges[-1])}")
    return names


def _column_values(table: pd.DataFrame, col: str, age_bins: tuple[float, ...], where: Path) -> pd.Series:
    if col == AGE_BIN:
        if "age" not in table.columns:
            raise NeuroditError("label age_bin needs an age column in participants.tsv", where)
        age = pd.to_numeric(table["age"], errors="coerce")
        if age.isna().any():
            raise NeuroditError(f"label age_bin: {int(age.isna().sum())} rows without a numeric age", where)
        idx = np.searchsorted(np.asarray(age_bins, dtype=float), age.to_numpy(), side="right")
        names = age_bin_names(age_bins)
        return pd.Series([names[i] for i in idx], index=table.index)
    if col not in table.columns:
        raise NeuroditError(f"label column '{col}' not in participants.tsv "
                            f"(columns: {', '.join(map(str, table.columns))})", where)
    vals = table[col]
    missing = vals.isna() | vals.astype(str).str.strip().str.lower().isin(["", "n/a", "nan", "none"])
    if missing.any():
        raise NeuroditError(f"label column '{col}' is missing on {int(missing.sum())} rows "
                            f"(first: line {int(np.flatnonzero(missing.to_numpy())[0]) + 2})", where)
    return vals.astype(str)


def make_labels(table: pd.DataFrame, label: str, age_bins: list[float] | tuple[float, ...],
                where: Path) -> tuple[LabelSpec, np.ndarray]:
    """Class ids (N,) int64 and the LabelSpec for ``label`` (``"sex"`` or ``"sex*age_bin"``)."""
    columns = tuple(c.strip() for c in label.replace("×", "*").split("*") if c.strip())
    if not columns:
        raise NeuroditError(f"empty label '{label}'")
    edges = tuple(float(a) for a in age_bins)
    if AGE_BIN in columns and (not edges or list(edges) != sorted(set(edges))):
        raise NeuroditError(f"age_bins must be increasing edges in years, got {list(age_bins)}")
    parts = [_column_values(table, c, edges, where) for c in columns]
    combined = parts[0].copy()
    for p in parts[1:]:
        combined = combined + "|" + p
    if AGE_BIN in columns:  # keep bin order (not alphabetical) so class ids read young -> old
        order = {n: i for i, n in enumerate(age_bin_names(edges))}

        def key(name: str) -> tuple:
            return tuple(order.get(v, v) if c == AGE_BIN else v
                         for c, v in zip(columns, name.split("|"), strict=True))

        classes = tuple(sorted(set(combined), key=key))
    else:
        classes = tuple(sorted(set(combined)))
    index = {c: i for i, c in enumerate(classes)}
    ids = np.array([index[v] for v in combined], dtype=np.int64)
    return LabelSpec(label=label, columns=columns, classes=classes,
                     age_bins=edges if AGE_BIN in columns else ()), ids


@dataclass(frozen=True)
class ClassPlan:
    """Which class each synthetic volume gets (``neurodit sample``): ``class_of`` (N,) class indices in
    volume order; ``wanted`` the ``--label`` selection ({} = every class); ``match`` the ``--match`` table
    (None without), whose participant ids are ``avoid_ids`` (synthetic ids must never collide with them)
    and whose per-row values beyond the classes go into ``extra`` (``{column: (N,) values}``)."""

    class_of: tuple[int, ...]
    wanted: dict[str, str]
    match: Path | None = None
    avoid_ids: frozenset[str] = frozenset()
    extra: dict[str, tuple] | None = None

    @property
    def n(self) -> int:
        return len(self.class_of)

    def columns(self, labels: LabelSpec) -> dict[str, list]:
        """``{column: [value per volume]}`` for the synthetic participants.tsv: the class columns (e.g.
        sex, age_bin), then ``extra``."""
        rows = [labels.class_values(k) for k in self.class_of]
        cols = {c: [r[c] for r in rows] for c in labels.columns}
        return {**cols, **{k: list(v) for k, v in (self.extra or {}).items()}}

    def counts(self, labels: LabelSpec) -> dict[str, int]:
        """Volumes per class name (classes with none left out), for run.json and the CLI."""
        return {labels.classes[k]: self.class_of.count(k) for k in sorted(set(self.class_of))}


def plan_classes(labels: LabelSpec, n: int | None = None, *, label: Any = None,
                 match: str | Path | None = None) -> ClassPlan:
    """The classes of ``n`` synthetic volumes: balanced over every class (or those matching ``label``,
    e.g. ``{"sex": "F"}`` or ``["sex=F"]``), or one volume per row of the ``match`` participants.tsv, in
    its order, with the class that row has under the run's own labels (an ``age_bin`` run bins the
    table's ages with its own edges). ``match`` replaces ``n`` (both given: they must agree) and cannot
    be combined with ``label``. Bad input: NeuroditError (naming the table), before anything is written.
    """
    from neurodit.data.synthetic import parse_label

    wanted = parse_label(label) if not isinstance(label, dict) else dict(label)
    if match is None:
        if n is None:
            raise NeuroditError("give --n (number of volumes) or --match (a participants.tsv to match)")
        if n < 1:
            raise NeuroditError(f"--n must be >= 1, got {n}")
        classes = labels.select(wanted) if wanted else list(range(labels.num_classes))
        return ClassPlan(tuple(classes[i % len(classes)] for i in range(n)), wanted)
    from neurodit.data.cohort import TABLE_NAME, read_participants

    path = Path(match).expanduser()
    path = path / TABLE_NAME if path.is_dir() else path
    if wanted:
        raise NeuroditError("--match and --label do not combine: the matched table sets every class", path)
    table = read_participants(path)
    for c in labels.columns:  # a column the run needs but the table lacks (read_participants fills it with n/a)
        col = "age" if c == AGE_BIN else c
        if col not in table.columns or table[col].isna().all():
            raise NeuroditError(f"--match: no '{col}' column (or no value in it); the run's label "
                                f"'{labels.label}' needs it", path)
    # the table's class of each row, spelled as the run's classes ("F|40-60"); errors name the table
    parts = [_column_values(table, c, labels.age_bins, path) for c in labels.columns]
    combined = parts[0].copy()
    for p in parts[1:]:
        combined = combined + "|" + p
    index = {c: i for i, c in enumerate(labels.classes)}
    unknown = [(i, v) for i, v in enumerate(combined) if v not in index]
    if unknown:
        names = sorted({v for _, v in unknown})
        raise NeuroditError(f"--match: {len(unknown)} rows have a class the run was not trained on "
                            f"({', '.join(names)}; first: line {unknown[0][0] + 2}; the run's classes: "
                            f"{', '.join(labels.classes)})", path)
    if n is not None and n != len(table):
        raise NeuroditError(f"--n {n} disagrees with the {len(table)} rows of the --match table "
                            "(leave --n out)", path)
    # An age-bin run conditions on the bin only; the matched row's age (inside that bin) is what a per-subject
    # age analysis of the synthetic cohort needs (morphometry's CSF-vs-age slope), so it travels along.
    # A run without age in its labels knows nothing of age: no age column, so no age effect is claimed.
    extra = {"age": tuple(float(a) for a in table["age"])} if AGE_BIN in labels.columns else {}
    return ClassPlan(tuple(index[v] for v in combined), {}, match=path,
                     avoid_ids=frozenset(str(p) for p in table["participant_id"]), extra=extra)


def write_run_files(run_dir: Path, *, config: dict[str, Any], labels: LabelSpec, class_ids: np.ndarray,
                    prep_dir: Path, mask: np.ndarray, spec, preset, generator: str) -> None:
    """Write the run-folder files a sampler needs (everything but ``model/``), before training starts.

    ``config``: the resolved train config as a plain dict; ``class_ids`` (N,) int64 of the training
    volumes; ``mask`` (D, H, W) bool; ``spec`` a TilingSpec; ``preset`` the network's config (the input
    adapter's: a ModelPreset, a UNet3DConfig; anything with ``to_dict()``); ``generator`` its name.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_generator(run_dir, generator)
    atomic_write_text(run_dir / "train_config.yaml", yaml.safe_dump(config, sort_keys=False))
    write_json(run_dir / "labels.json", {**labels.to_dict(),
                                         "counts": np.bincount(class_ids, minlength=labels.num_classes)})
    shutil.copyfile(Path(prep_dir) / "prepare.json", run_dir / "prepare.json")
    # the training participants, kept with the run: the leakage check (neurodit.data.leakage) reads
    # them even after the prepared folder has moved
    shutil.copyfile(Path(prep_dir) / "participants.tsv", run_dir / "train_participants.tsv")
    # the brain mask turns sampled background to exactly 0 mm2/s, as in the inputs
    np.save(run_dir / "mask.npy", np.asarray(mask, dtype=bool))
    write_json(run_dir / "tiling.json", spec.to_dict())
    write_json(run_dir / "preset.json", preset.to_dict())


class TrainedRun:
    """A diffusion RUN_DIR opened for sampling: EMA model, labels, grid/normalisation, mask, diffusion
    process, and the generator's input adapter (``inputs``: tiling, codec, standardizer; nothing here
    depends on which generator it is). ``input_shape`` is one model input (C, *spatial): (C, S, S)
    mosaics, (1, D, H, W) volumes; ``to_volumes`` turns model outputs into mm²/s volumes."""

    def __init__(self, run_dir: str | Path, device: torch.device | None = None):
        from neurodit.config import from_dict
        from neurodit.data.grid import Grid
        from neurodit.data.normalize import Normalization
        from neurodit.data.prepare import maps_of
        from neurodit.diffusion import DiffusionConfig
        from neurodit.generators.registry import get_generator, is_diffusion

        self.path = Path(run_dir)
        self.generator = read_generator(self.path)
        if not is_diffusion(self.generator):
            raise NeuroditError(f"a '{self.generator}' run is not a diffusion run (open it through "
                                "neurodit.generators)", self.path)
        missing = [f for f in RUN_FILES if not (self.path / f).is_file()]
        if missing:
            raise NeuroditError(f"not a finished neurodit run (missing {', '.join(missing)})", self.path)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.labels = LabelSpec.from_dict(read_json(self.path / "labels.json"), self.path / "labels.json")
        prep = read_json(self.path / "prepare.json")
        try:
            self.grid = Grid.from_dict(prep["grid"])
            self.norm = Normalization.from_dict(prep["normalization"])
        except (KeyError, TypeError) as exc:
            raise NeuroditError(f"missing or bad key {exc}", self.path / "prepare.json") from exc
        cfg = yaml.safe_load((self.path / "train_config.yaml").read_text()) or {}
        self.train_config = cfg
        self.diffusion = from_dict(DiffusionConfig, cfg.get("diffusion", {}), "diffusion")
        # several maps: the channel names and windows; ((), ()) for one
        self.maps, self.norms = maps_of(prep, self.path / "prepare.json")
        mask_file = self.path / "mask.npy"
        self.mask = np.load(mask_file, allow_pickle=False) if mask_file.is_file() else None
        self.inputs = get_generator(self.generator).inputs.open(self.path)
        self.model, n_model = self.inputs.load_model(self.path / "model", self.device)
        if n_model != self.labels.num_classes:
            raise NeuroditError(f"model has {n_model} classes but labels.json "
                                f"lists {self.labels.num_classes}", self.path / "model")

    @property
    def sampler(self) -> str:
        """The sampler the run was trained to be sampled with (its config's ``sampler``, where it belongs to
        the run's objective), else the objective's default (``default_sampler``)."""
        from neurodit.diffusion import DDPM_SAMPLERS, FLOW_SAMPLERS, default_sampler

        named = self.train_config.get("sampler")
        own = FLOW_SAMPLERS if self.diffusion.objective == "flow" else DDPM_SAMPLERS
        return named if named in own else default_sampler(self.diffusion)

    @property
    def spec(self):
        """The run's ``TilingSpec`` (``tiling.json``)."""
        return self.inputs.spec

    def attach_vae(self, vae=None) -> None:
        """Load what decoding needs beyond the run files: latent presets' VAE (``vae``, tests, or the
        preset's); nothing for the others."""
        self.inputs.attach_codec(self.device, vae)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.inputs.input_shape

    def to_volumes(self, x: torch.Tensor) -> np.ndarray:
        """(B, C, *spatial) model outputs (standardized when the run is) -> (B, D, H, W) float32 volumes
        in mm²/s (0 outside the mask); a several-map run: (B, M, D, H, W), each map in its own unit and the
        maps made consistent (``neurodit.data.prepare.maps_to_physical``: MD >= 0, FA in [0, 1], AD >= RD)."""
        from neurodit.data.prepare import maps_to_physical, model_to_mm2s

        y = self.inputs.decode(x)
        if not self.maps:
            return model_to_mm2s(y, self.norm, self.mask)
        phys = maps_to_physical(y, self.maps, self.norms, self.mask)
        return np.stack([phys[m] for m in self.maps], axis=1)


__all__ = ["AGE_BIN", "FINISHED_RUN_FILES", "GENERATOR_FILE", "RUN_FILES", "ClassPlan", "LabelSpec", "TrainedRun",
           "age_bin_names", "plan_classes", "is_run_folder", "make_labels", "read_generator", "write_generator",
           "write_run_files"]

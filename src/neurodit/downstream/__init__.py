"""Downstream utility of synthetic MD maps: sex classifier (real / real+synthetic / synthetic) and
transfer to AD vs CN (Chattopadhyay et al. 2025). The design and the ``results.json`` structure are
documented in :mod:`neurodit.downstream.experiment`.

:func:`run_downstream` is the folder layer: it reads cohort folders (``neurodit.data.cohort``),
resamples every volume to one grid (``neurodit.data.grid.make_grid(shape)``), scales mm²/s to model
range (``neurodit.data.normalize.Normalization``) and calls
:func:`neurodit.downstream.experiment.run_experiment`, which works on in-memory arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from neurodit.data.maps import get_map
from neurodit.downstream.experiment import DownstreamConfig, run_experiment
from neurodit.downstream.labelled import LabelledSet, labelled_from_table
from neurodit.errors import NeuroditError

__all__ = ["DownstreamConfig", "LabelledSet", "labelled_from_prepared", "labelled_from_table", "load_labelled", "resolve_config",
           "run_downstream", "run_experiment"]


def same_map(*folders: str | Path) -> str:
    """The one map every cohort folder holds (``neurodit.data.maps.read_map``); NeuroditError naming the first
    folder that holds another: a classifier trained on MD must not be tested on FA, nor augmented with it."""
    from neurodit.data.maps import MAP_FILE, read_map

    maps = [read_map(f) for f in folders]
    for f, m in zip(folders, maps, strict=True):
        if m != maps[0]:
            raise NeuroditError(f"holds {m.upper()} but {folders[0]} holds {maps[0].upper()}: every cohort of one "
                                "downstream experiment must hold the same map", Path(f) / MAP_FILE)
    return maps[0]


def load_labelled(data_dir: str | Path, task: str, shape: tuple[int, int, int], *, synthetic: bool | None,
                  include_mci: bool = False) -> LabelledSet:
    """Read a cohort folder and return its volumes for ``task`` on the common grid, in model range.

    ``synthetic``: False keeps real rows only (SOURCE, TARGET); None keeps every row (SYN_DIR: all its
    rows are treated as synthetic, whatever its ``synthetic`` column says).
    """
    from neurodit.data.cohort import load_volumes, read_cohort
    from neurodit.data.grid import make_grid
    from neurodit.data.maps import get_map

    cohort = read_cohort(data_dir)
    grid = make_grid(shape=shape)
    vols_phys, _ = load_volumes(cohort, grid)  # (N, D, H, W) float32 in the map's unit on the RAS grid
    # the map's own window (MD / AD / RD [0, 4e-3] mm²/s, FA [0, 1]) -> [-1, 1], background -1
    vols = get_map(cohort.map).normalization().to_model(vols_phys).astype("float32")
    return labelled_from_table(cohort.table, vols, task, name=str(Path(data_dir) / "participants.tsv"),
                               include_mci=include_mci, synthetic=synthetic)


def labelled_from_prepared(prep_dir: str | Path, task: str, shape: tuple[int, int, int]) -> LabelledSet:
    """A PREP_DIR's real volumes for ``task`` on the common grid, in model range: mapped back to mm²/s
    (``model_to_mm2s``), resampled as a cohort folder's volumes are in :func:`load_labelled` (so a
    generator's samples, written in mm²/s on the prepared grid, travel the same path) and scaled."""
    from neurodit.data.cohort import resample_to_grid
    from neurodit.data.grid import make_grid
    from neurodit.data.prepare import load_prepared, model_to_mm2s

    prep = load_prepared(prep_dir)
    prep.require_one_map("downstream")
    grid = make_grid(shape=shape)
    vols = np.empty((len(prep),) + tuple(grid.shape), np.float32)  # (N, D, H, W) on the common grid
    for i in range(len(prep)):
        mm2s = model_to_mm2s(prep.volumes[i], prep.norm, prep.mask)
        vols[i] = resample_to_grid(mm2s, prep.grid.affine, grid)
    vols = prep.norm.to_model(vols).astype("float32")
    return labelled_from_table(prep.table, vols, task, name=str(Path(prep_dir) / "participants.tsv"), synthetic=False)


def resolve_config(config: DownstreamConfig | None = None, **settings) -> DownstreamConfig:
    """``config`` (default ``DownstreamConfig()``) with every setting that is not None put over it; an
    unknown name raises NeuroditError (``neurodit.config.from_dict``)."""
    from neurodit.config import from_dict, to_dict

    given = {k: v for k, v in settings.items() if v is not None}
    cfg = from_dict(DownstreamConfig, {**to_dict(config or DownstreamConfig()), **given})
    cfg.shape = tuple(int(s) for s in cfg.shape)
    return cfg


def run_downstream(source: str | Path, target: str | Path, out: str | Path,
                   synthetic: str | Path | dict[str, str | Path] | None = None,
                   arch: str | None = None, folds: int | None = None, seeds: int | None = None, *,
                   config: DownstreamConfig | None = None, overwrite: bool = False,
                   progress: Callable[[str], None] | None = None, **settings) -> Path:
    """Run the downstream experiment on cohort folders and write ``DS_DIR`` (``out``).

    Args:
        source: SOURCE_DIR (Cam-CAN-like, ``sex`` labels); synthetic rows in it are ignored.
        target: TARGET_DIR (ADNI-like, ``diagnosis`` labels).
        out: DS_DIR, written atomically.
        synthetic: SYN_DIR (``neurodit sample`` output, ``sex`` labels), or several as {name: SYN_DIR} (the
            synthetic arms once per cohort, ``sex/real+synthetic[name]`` ...), optional. A cohort whose
            participant ids equal the source's is refused (NeuroditError); named cohorts' ids are scoped by
            their name (``name:syn-000001``), so two ``neurodit sample`` outputs go side by side.
        config: the base settings (default ``DownstreamConfig()``).
        arch, folds, seeds, **settings: fields of :class:`DownstreamConfig` (unknown names raise); every one
            given (not None) overrides ``config``'s value, so no argument is ever silently ignored.
    """
    cfg = resolve_config(config, arch=arch, folds=folds, seeds=seeds, **settings)
    map_name = same_map(source, target, *(synthetic.values() if isinstance(synthetic, dict) else
                                          [synthetic] if synthetic is not None else []))
    src = load_labelled(source, "sex", cfg.shape, synthetic=False)
    tgt = load_labelled(target, "diagnosis", cfg.shape, synthetic=False, include_mci=cfg.include_mci)
    if isinstance(synthetic, dict):
        syn = {}
        for name, d in synthetic.items():
            got = load_labelled(d, "sex", cfg.shape, synthetic=None)
            shared = sorted(set(got.groups) & set(src.groups))
            if shared:  # checked before scoping: a copied source id must not hide behind the cohort's name
                raise NeuroditError(f"{got.name}: participant ids also in the source cohort ({shared[0]}, ...); "
                                    "synthetic ids must be distinct (e.g. syn-000001)")
            # scoped by the cohort's name: two generators' syn-000001 are two participants
            syn[name] = got.scoped(name)
        syn_inputs = {name: str(Path(d).resolve()) for name, d in synthetic.items()}
    else:
        syn = load_labelled(synthetic, "sex", cfg.shape, synthetic=None) if synthetic is not None else None
        syn_inputs = str(Path(synthetic).resolve()) if synthetic is not None else None
    inputs = {"source": str(Path(source).resolve()), "target": str(Path(target).resolve()), "synthetic": syn_inputs,
              "grid_shape": list(cfg.shape), "map": map_name,
              "normalization": get_map(map_name).normalization().to_dict()}
    return run_experiment(src, tgt, out, syn, cfg, overwrite=overwrite, progress=progress, inputs=inputs)

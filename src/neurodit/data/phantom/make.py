"""Write a phantom cohort folder (:func:`make_phantom_cohort`): the input format plus the hidden variables."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from neurodit.data.cohort import write_participants
from neurodit.data.maps import write_map
from neurodit.data.phantom.effects import EFFECT_MODELS, PhantomEffects, StudyEffects
from neurodit.data.phantom.fa import FAEffects
from neurodit.data.phantom.site import SiteEffects, resolve_site
from neurodit.data.phantom.subjects import draw_subjects
from neurodit.data.phantom.synthesize import MAP_NAMES, synthesize_maps
from neurodit.data.phantom.templates import load_templates
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, atomic_write_bytes, nifti_bytes, write_json, write_run_info

LATENT_FLOAT_FORMAT = "%.6g"  # the tables' floats as the phantom has always written them


def make_phantom_cohort(cohort: str, n: int, out: str | Path, seed: int = 0, voxel_size: float = 2.0,
                        include_mci: bool = False, overwrite: bool = False,
                        effects: PhantomEffects | None = None, effects_model: str = "study",
                        site: str | SiteEffects | None = None, study: StudyEffects | None = None,
                        maps: tuple[str, ...] | list[str] = ("md",), fa: FAEffects | None = None) -> Path:
    """Write a ``camcan`` or ``adni`` phantom cohort folder (input format), atomically.

    Args:
        cohort: ``"camcan"`` (sex F/M, ages 18-88) or ``"adni"`` (CN/AD[/MCI], ages 55-90).
        n: number of subjects (ids ``sub-0001``...).
        out: output folder; must be absent or empty unless ``overwrite``.
        seed: same seed -> same bytes (except ``run.json``).
        voxel_size: mm; 1 and 2 are the template resolutions, other sizes are resampled.
        include_mci: adni only: CN/MCI/AD in thirds instead of CN/AD halves.
        effects: effect sizes of the shared (classic) model; defaults if None.
        effects_model: ``"study"`` (lesions, non-linear anatomy, site effects; the default) or
            ``"classic"`` (the model before issue 11, byte for byte).
        site: study model only: a :data:`SITES` name or :class:`SiteEffects`; None = the cohort's
            own site (camcan-like for camcan, adni-like for adni).
        study: study-model effect sizes; defaults if None.
        maps: ``("md",)`` (the default): ``out`` is one MD cohort folder, as before issue 22, byte for byte.
            Several, e.g. ``("md", "fa")``: one cohort folder per map, ``out/md/`` and ``out/fa/``, each
            with the same participants.tsv, ``<participant_id>_<map>.nii.gz`` volumes of the same latent
            subjects, ``map.json``, ``phantom_latents.tsv`` (plus the FA levels wm_fa, gm_fa),
            ``phantom.json`` (plus ``maps``, ``map`` and the FA sizes) and ``run.json``. ``("fa",)``
            alone: ``out`` is one FA cohort folder.
        fa: FA model sizes (:class:`~neurodit.data.phantom.fa.FAEffects`); defaults if None.

    Returns the output folder. Volumes: float32 (D, H, W) MD in mm²/s / FA (unitless, [0, 1]), 0 outside
    the brain, MNI affine (2 mm: 99x117x95 voxels, origin (-98, -134, -72) mm).
    """
    maps = tuple(str(m).strip().lower() for m in maps)
    bad = [m for m in maps if m not in MAP_NAMES]
    if not maps or bad or len(set(maps)) != len(maps):
        raise NeuroditError(f"phantom: --maps must name distinct maps among {', '.join(MAP_NAMES)}, "
                            f"got {','.join(maps) or 'none'}")
    if effects_model not in EFFECT_MODELS:
        raise NeuroditError(f"phantom: unknown effects model '{effects_model}' (choose {', '.join(EFFECT_MODELS)})")
    e = effects or PhantomEffects()
    classic = effects_model == "classic"
    if classic and (site is not None or study is not None):
        raise NeuroditError("phantom: --site applies to the study effects model only, not 'classic'")
    s = None if classic else (study or StudyEffects())
    table = draw_subjects(cohort, n, seed=seed, include_mci=include_mci, effects=e, study=s)  # checks cohort
    site_fx = None if classic else resolve_site(site, cohort)
    t = load_templates(float(voxel_size))
    f = FAEffects() if "fa" in maps else None
    # one folder per map when there are several; "md" alone keeps the earlier single-folder layout
    sub = {m: Path(m) if len(maps) > 1 else Path() for m in maps}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for m in maps:
            (tmp / sub[m]).mkdir(exist_ok=True)
        extra = []
        for _, row in table.iterrows():
            vols, info = synthesize_maps(t, row, e, study=s, site=site_fx, maps=maps, fa=f)
            extra.append(info)
            pid = row["participant_id"]
            for m, vol in vols.items():
                # the MD volume of the earlier layout keeps its name, sub-XXXX.nii.gz
                name = f"{pid}.nii.gz" if maps == ("md",) else f"{pid}_{m}.nii.gz"
                atomic_write_bytes(tmp / sub[m] / name, nifti_bytes(vol, t.affine, xform_code=4))
        extra_df = pd.DataFrame(extra, index=table.index)
        if classic:  # classic: no lesion columns (its earlier tables, byte for byte), FA levels if any
            extra_df = extra_df[[c for c in extra_df.columns if c in ("wm_fa", "gm_fa")]]
        if len(extra_df.columns):
            table = pd.concat([table, extra_df], axis=1)
        cols = ["participant_id", "sex", "age", "diagnosis"]
        cfg = {"cohort": cohort, "n": n, "seed": seed, "voxel_size": float(voxel_size),
               "include_mci": include_mci, "effects": dataclasses.asdict(e),
               "shape": list(t.shape), "affine": t.affine.tolist(), "unit": "mm2/s"}
        if not classic:  # classic keeps its earlier phantom.json, byte for byte
            cfg.update({"effects_model": effects_model, "study": dataclasses.asdict(s),
                        "site": dataclasses.asdict(site_fx)})
        if f is not None:
            cfg["fa"] = dataclasses.asdict(f)
        for m in maps:
            d = tmp / sub[m]
            write_participants(table[cols], d / "participants.tsv", float_format=LATENT_FLOAT_FORMAT)
            write_participants(table, d / "phantom_latents.tsv", float_format=LATENT_FLOAT_FORMAT)
            c = dict(cfg)
            if maps != ("md",):  # the earlier layout keeps its phantom.json and has no map.json (= md)
                c.update({"maps": list(maps), "map": m, "unit": "mm2/s" if m == "md" else "1"})
                write_map(d, m)
            write_json(d / "phantom.json", c)
            write_run_info(d, c, seed, stage="phantom")
    return Path(out)

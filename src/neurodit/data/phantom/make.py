"""Write a phantom cohort folder (:func:`make_phantom_cohort`): the input format plus the hidden variables."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from neurodit.data.cohort import write_participants
from neurodit.data.phantom.effects import EFFECT_MODELS, PhantomEffects, StudyEffects
from neurodit.data.phantom.site import SiteEffects, resolve_site
from neurodit.data.phantom.subjects import draw_subjects
from neurodit.data.phantom.synthesize import synthesize_with_lesions
from neurodit.data.phantom.templates import load_templates
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, atomic_write_bytes, nifti_bytes, write_json, write_run_info

LATENT_FLOAT_FORMAT = "%.6g"  # the tables' floats as the phantom has always written them


def make_phantom_cohort(cohort: str, n: int, out: str | Path, seed: int = 0, voxel_size: float = 2.0,
                        include_mci: bool = False, overwrite: bool = False,
                        effects: PhantomEffects | None = None, effects_model: str = "study",
                        site: str | SiteEffects | None = None, study: StudyEffects | None = None) -> Path:
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

    Returns the output folder. Volumes: float32 (D, H, W) MD in mm²/s, 0 outside the brain,
    MNI affine (2 mm: 99x117x95 voxels, origin (-98, -134, -72) mm).
    """
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
    with atomic_dir(out, overwrite=overwrite) as tmp:
        lesions = []
        for _, row in table.iterrows():
            vol, info = synthesize_with_lesions(t, row, e, study=s, site=site_fx)
            lesions.append(info)
            atomic_write_bytes(tmp / f"{row['participant_id']}.nii.gz", nifti_bytes(vol, t.affine, xform_code=4))
        if not classic:
            table = pd.concat([table, pd.DataFrame(lesions, index=table.index)], axis=1)
        cols = ["participant_id", "sex", "age", "diagnosis"]
        write_participants(table[cols], tmp / "participants.tsv", float_format=LATENT_FLOAT_FORMAT)
        write_participants(table, tmp / "phantom_latents.tsv", float_format=LATENT_FLOAT_FORMAT)
        cfg = {"cohort": cohort, "n": n, "seed": seed, "voxel_size": float(voxel_size),
               "include_mci": include_mci, "effects": dataclasses.asdict(e),
               "shape": list(t.shape), "affine": t.affine.tolist(), "unit": "mm2/s"}
        if not classic:  # classic keeps its earlier phantom.json, byte for byte
            cfg.update({"effects_model": effects_model, "study": dataclasses.asdict(s),
                        "site": dataclasses.asdict(site_fx)})
        write_json(tmp / "phantom.json", cfg)
        write_run_info(tmp, cfg, seed, stage="phantom")
    return Path(out)


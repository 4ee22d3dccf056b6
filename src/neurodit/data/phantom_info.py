"""Read a phantom cohort's ``phantom.json`` (written by :func:`neurodit.data.phantom.make_phantom_cohort`).

One reader for every consumer (the report's site-shift table): it only reads and validates the file.
The study model adds a ``site`` object (scanner / protocol effects of the cohort, docs/PHANTOM.md):
``{name, md_scale, noise_sd, blur_fwhm_mm, bias_sd}``; the classic model has none.
"""

from __future__ import annotations

from pathlib import Path

from neurodit.errors import NeuroditError
from neurodit.io import read_json

PHANTOM_FILE = "phantom.json"


def read_phantom_info(cohort_dir: str | Path) -> dict | None:
    """``cohort_dir/phantom.json`` as a dict, or None when the folder is not a phantom cohort.

    Raises NeuroditError naming the file when it is not valid JSON, not an object, or its ``site`` is
    present but not an object of names to numbers / strings (e.g. ``{"name": "adni", "md_scale": 1.05}``).
    """
    path = Path(cohort_dir) / PHANTOM_FILE
    if not path.is_file():
        return None
    info = read_json(path)
    if not isinstance(info, dict):
        raise NeuroditError("must hold a JSON object (the output of neurodit phantom)", path)
    site = info.get("site")
    if site is not None and not (isinstance(site, dict) and all(
            isinstance(v, (int, float, str)) or v is None for v in site.values())):
        raise NeuroditError("'site' must map effect names to numbers (e.g. md_scale, noise_sd)", path)
    return info


__all__ = ["PHANTOM_FILE", "read_phantom_info"]

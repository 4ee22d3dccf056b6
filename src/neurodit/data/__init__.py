"""Data layer: cohort folders in, one prepared array cache out (see docs/ARCHITECTURE.md).

``cohort`` (read/validate a cohort folder, load and resample NIfTI, the one ``participants.tsv``
writer), ``grid`` (the RAS target grid), ``normalize`` (mm²/s <-> [-1, 1]), ``prepare`` (PREP_DIR
writer/reader, export back to NIfTI), ``split`` (train / held-out by participant), ``synthetic``
(synthetic cohort folders), ``phantom`` (phantom cohorts, a package). nilearn is imported only when
the MNI152 mask is needed.
"""

from neurodit.data.cohort import Cohort, load_volumes, read_cohort, write_nifti
from neurodit.data.grid import Grid, make_grid
from neurodit.data.normalize import Normalization
from neurodit.data.prepare import Prepared, load_prepared, prepare

__all__ = [
    "Cohort", "Grid", "Normalization", "Prepared", "load_prepared", "load_volumes", "make_grid",
    "prepare", "read_cohort", "write_nifti",
]

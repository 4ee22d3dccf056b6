"""Data layer: cohort folders in, one prepared array cache out (see docs/ARCHITECTURE.md).

Submodules import lazily-heavy libraries (nibabel, nilearn) only where used; import the names from
their modules, e.g. ``from neurodit.data.prepare import prepare, load_prepared``.
"""

from neurodit.data.cohort import Cohort, load_volumes, read_cohort, write_nifti
from neurodit.data.grid import Grid, make_grid
from neurodit.data.normalize import Normalization
from neurodit.data.prepare import Prepared, load_prepared, prepare

__all__ = [
    "Cohort", "Grid", "Normalization", "Prepared", "load_prepared", "load_volumes", "make_grid",
    "prepare", "read_cohort", "write_nifti",
]

"""Reference generators (``neurodit baseline``): pca, noise, copy and mean, see
:mod:`neurodit.generators.reference`."""

from neurodit.generators.reference import KINDS, ReferenceModel, fit_reference, write_baseline

__all__ = ["KINDS", "ReferenceModel", "fit_reference", "write_baseline"]

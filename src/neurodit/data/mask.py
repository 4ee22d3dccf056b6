"""The support mask of volume sets: where the brain is, read from the MD maps themselves.

Not the prepare stage's mask (:func:`neurodit.data.prepare.brain_mask`: the MNI152 brain mask resampled
to the grid and dilated): this one is computed from any (N, D, H, W) sets in mm²/s, e.g. the judge's
evaluation mask (voxels that are brain in at least half of the real volumes) or the reference
generators' support (the union of the training brains). numpy only, so ``neurodit baseline`` needs
neither torch nor the judge.
"""

from __future__ import annotations

import numpy as np

from neurodit.data.stream import chunks

# "brain" = MD above this (mm²/s): far below any tissue but above the halo resampling leaves around the
# brain; the judge's tissue split and morphometry use the same cut-off
BRAIN_MIN_MM2S = 1e-4


def support_mask(*sets_mm2s, min_fraction: float = 0.5) -> np.ndarray:
    """Voxels with MD > ``BRAIN_MIN_MM2S`` in at least ``min_fraction`` of all given (N, D, H, W) volumes
    -> (D, H, W) bool. Streamed (:func:`neurodit.data.stream.chunks`): memory flat in N."""
    count = sum((c > BRAIN_MIN_MM2S).sum(0) for s in sets_mm2s for _, c in chunks(s))  # (D, H, W) int
    total = sum(len(s) for s in sets_mm2s)
    return count >= min_fraction * total


__all__ = ["BRAIN_MIN_MM2S", "support_mask"]

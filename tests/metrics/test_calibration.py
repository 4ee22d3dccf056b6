"""The support mask in the data layer, and the calibration panel without import cycles: the reference
generators reach only the data layer, the panel is handed the judge instead of importing the stage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import neurodit
from import_graph import graph, reachable
from neurodit.data.mask import support_mask


def test_support_mask_counts_brain_voxels_over_all_sets():
    vols = np.zeros((4, 2, 2, 2), dtype=np.float32)
    vols[:, 0, 0, 0] = 0.8e-3  # brain in 4 of 4
    vols[:2, 1, 1, 1] = 0.8e-3  # 2 of 4: exactly half
    vols[:1, 0, 1, 0] = 0.8e-3  # 1 of 4
    vols[:, 1, 0, 0] = 0.5e-4  # below BRAIN_MIN_MM2S (1e-4): background everywhere
    assert np.argwhere(support_mask(vols)).tolist() == [[0, 0, 0], [1, 1, 1]]
    assert support_mask(vols, min_fraction=1e-6).sum() == 3  # the union
    np.testing.assert_array_equal(support_mask(vols[:1], vols[1:]), support_mask(vols))  # pooled over sets


def test_generators_and_the_calibration_panel_import_no_cycle():
    g = graph()
    for mod in ("neurodit.metrics.evaluate", "neurodit.metrics.calibration", "neurodit.generators.reference",
                "neurodit.data.mask"):
        assert mod not in reachable(g, mod), mod
    assert not [m for m in reachable(g, "neurodit.generators.reference") if m.startswith("neurodit.metrics")]
    assert "neurodit.metrics.evaluate" not in reachable(g, "neurodit.metrics.calibration")
    assert "neurodit.generators.reference" in reachable(g, "neurodit.metrics.calibration")


def test_baseline_generators_load_without_torch_or_the_judge():
    code = ("import sys, neurodit.generators.reference, neurodit.data.mask; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('neurodit.metrics')))")
    src = str(Path(neurodit.__file__).resolve().parents[1])  # this checkout's neurodit, not an installed one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "[]"

"""read_phantom_info: phantom.json of a phantom cohort, None for other cohorts, errors naming the file."""

from __future__ import annotations

import pytest

from neurodit.data.phantom import make_phantom_cohort
from neurodit.data.phantom_info import read_phantom_info
from neurodit.errors import NeuroditError
from neurodit.io import write_json


def test_read_phantom_info(tmp_path):
    out = make_phantom_cohort("adni", n=2, out=tmp_path / "adni", seed=3, voxel_size=12.0)
    info = read_phantom_info(out)
    assert info["cohort"] == "adni" and info["n"] == 2 and info["seed"] == 3
    assert read_phantom_info(tmp_path) is None  # not a phantom cohort
    site = {"name": "adni", "md_scale": 1.05, "noise_sd": 0.05, "blur_fwhm_mm": 5.0, "bias_sd": 0.04}
    write_json(out / "phantom.json", {**info, "site": site})
    assert read_phantom_info(out)["site"] == site
    for bad, match in (([1, 2], "must hold a JSON object"), ({"site": {"md_scale": [1.05]}}, "'site' must map")):
        write_json(out / "phantom.json", bad)
        with pytest.raises(NeuroditError, match=rf"phantom\.json.*{match}"):
            read_phantom_info(out)
    (out / "phantom.json").write_text("{oops")
    with pytest.raises(NeuroditError, match="not valid JSON"):
        read_phantom_info(out)

"""``read_results``: the one reader of DS_DIR/results.json (schema neurodit.downstream/1)."""

from __future__ import annotations

import pytest

from neurodit.downstream.schema import SCHEMA, read_results, result_figures
from neurodit.errors import NeuroditError
from neurodit.io import write_json

GOOD = {"schema": SCHEMA, "data": {}, "arms": {"sex/real": {"task": "sex"}},
        "comparisons": [{"arm": "sex/real+synthetic", "baseline": "sex/real"}], "verdict": {"summary": "s"}}


def test_read_results_and_figures(tmp_path):
    write_json(tmp_path / "results.json", GOOD)
    (tmp_path / "roc.png").write_bytes(b"png")
    assert read_results(tmp_path) == GOOD
    assert result_figures(tmp_path) == {"roc": tmp_path / "roc.png"}  # arms.png absent: not listed


@pytest.mark.parametrize("results, message", [
    ({k: v for k, v in GOOD.items() if k != "schema"}, r"expected schema neurodit\.downstream/1 .*, got None"),
    ({**GOOD, "schema": "other/2"}, "got 'other/2'"),
    ({k: v for k, v in GOOD.items() if k != "verdict"}, "missing key.s. verdict"),
    ({**GOOD, "comparisons": {"a": {}}}, "'comparisons' a list of objects"),
])
def test_read_results_refuses_other_layouts(tmp_path, results, message):
    write_json(tmp_path / "results.json", results)
    with pytest.raises(NeuroditError, match=message) as err:
        read_results(tmp_path)
    assert "results.json" in str(err.value)

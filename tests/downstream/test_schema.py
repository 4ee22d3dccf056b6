"""``read_results``: the one reader of DS_DIR/results.json (schema neurodit.downstream/2, /1 still read)."""

from __future__ import annotations

import pytest

from neurodit.downstream.schema import SCHEMA, data_sets, read_results, result_figures
from neurodit.errors import NeuroditError
from neurodit.io import write_json

GOOD = {"schema": SCHEMA, "data": {}, "arms": {"sex/real": {"task": "sex"}},
        "comparisons": [{"arm": "sex/real+synthetic", "baseline": "sex/real"}], "verdict": {"summary": "s"}}


def test_read_results_and_figures(tmp_path):
    write_json(tmp_path / "results.json", GOOD)
    (tmp_path / "roc.png").write_bytes(b"png")
    assert read_results(tmp_path) == GOOD
    assert result_figures(tmp_path) == {"roc": tmp_path / "roc.png"}  # arms.png absent: not listed
    old = {**GOOD, "schema": "neurodit.downstream/1"}  # written before named cohorts: the same layout
    write_json(tmp_path / "results.json", old)
    assert read_results(tmp_path) == old


def test_data_sets_lists_every_named_cohort():
    one = {"n_volumes": 4}
    assert data_sets({"data": {"source": one, "synthetic": one}}) == [("source", one), ("synthetic", one)]
    assert data_sets({"data": {"source": one, "synthetic": {"dit": one, "pca": one}}}) == [
        ("source", one), ("synthetic (dit)", one), ("synthetic (pca)", one)]


@pytest.mark.parametrize("results, message", [
    ({k: v for k, v in GOOD.items() if k != "schema"}, r"expected schema neurodit\.downstream/2 or neurodit\.downstream/1 .*, got None"),
    ({**GOOD, "schema": "other/2"}, "got 'other/2'"),
    ({k: v for k, v in GOOD.items() if k != "verdict"}, "missing key.s. verdict"),
    ({**GOOD, "comparisons": {"a": {}}}, "'comparisons' a list of objects"),
])
def test_read_results_refuses_other_layouts(tmp_path, results, message):
    write_json(tmp_path / "results.json", results)
    with pytest.raises(NeuroditError, match=message) as err:
        read_results(tmp_path)
    assert "results.json" in str(err.value)

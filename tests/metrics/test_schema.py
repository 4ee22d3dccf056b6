"""``read_metrics`` / ``families`` / ``metric_figures``: the one reader of EVAL_DIR/metrics.json."""

from __future__ import annotations

import pytest

from neurodit.errors import NeuroditError
from neurodit.io import write_json
from neurodit.metrics.schema import families, metric_figures, read_metrics


def test_read_metrics_families_and_figures(tmp_path):
    metrics = {"protocol": "ours", "n_real": 6, "msssim": {"real_real": {"mean": 0.8}},
               "c2st": {"auc": 0.51, "verdict": "could not tell them apart"}, "notes": ["x"],
               "figures": {"msssim": "msssim.png", "gone": "missing.png", "outside": "../evil.png"}}
    write_json(tmp_path / "metrics.json", metrics)
    (tmp_path / "msssim.png").write_bytes(b"png")
    (tmp_path.parent / "evil.png").write_bytes(b"png")
    got = read_metrics(tmp_path)
    assert got == metrics
    assert list(families(got)) == ["msssim", "c2st"]  # file order; run metadata is not a family
    assert metric_figures(tmp_path, got) == {"msssim": (tmp_path / "msssim.png").resolve()}


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"figures": {"msssim": 3}}', "'figures' must map names"),
])
def test_read_metrics_bad_files(tmp_path, content, message):
    (tmp_path / "metrics.json").write_text(content)
    with pytest.raises(NeuroditError, match=message) as err:
        read_metrics(tmp_path)
    assert "metrics.json" in str(err.value)


def test_read_metrics_missing(tmp_path):
    with pytest.raises(NeuroditError, match=r"metrics\.json: file not found"):
        read_metrics(tmp_path)


def test_read_metrics_checks_the_schema_version(tmp_path):
    from neurodit.metrics.schema import SCHEMA

    assert SCHEMA == "neurodit.metrics/1"
    write_json(tmp_path / "metrics.json", {"schema": "neurodit.metrics/1", "n_real": 3, "msssim": {"x": 1}})
    assert read_metrics(tmp_path)["schema"] == SCHEMA
    assert list(families(read_metrics(tmp_path))) == ["msssim"]  # the version is run metadata
    # written before the version existed: the same layout, read as version 1
    write_json(tmp_path / "metrics.json", {"n_real": 3})
    assert read_metrics(tmp_path) == {"n_real": 3}
    write_json(tmp_path / "metrics.json", {"schema": "neurodit.metrics/2", "n_real": 3})
    with pytest.raises(NeuroditError, match="expected schema neurodit.metrics/1 .*got 'neurodit.metrics/2'") as err:
        read_metrics(tmp_path)
    assert "metrics.json" in str(err.value)

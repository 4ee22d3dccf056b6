"""``run_downstream``'s settings: an explicit argument always wins over ``config``, nothing is ignored."""

from __future__ import annotations

import pytest

from neurodit.downstream import DownstreamConfig, resolve_config
from neurodit.errors import NeuroditError


def test_explicit_settings_override_the_config_and_none_keeps_it():
    base = DownstreamConfig(folds=4, seeds=2, epochs=7)
    cfg = resolve_config(base, arch=None, folds=3, seeds=None, epochs=5, shape=[16, 16, 16])
    assert (cfg.folds, cfg.seeds, cfg.epochs, cfg.arch) == (3, 2, 5, "small")
    assert cfg.shape == (16, 16, 16) and base.folds == 4  # the caller's config is not changed
    assert resolve_config().folds == DownstreamConfig().folds == 5


def test_unknown_setting_raises():
    with pytest.raises(NeuroditError, match="unknown"):
        resolve_config(DownstreamConfig(), fold=3)

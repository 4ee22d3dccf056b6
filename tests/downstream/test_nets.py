"""Networks: the small CPU preset's size and shapes; transfer copies every backbone tensor, new head only."""

import numpy as np
import pytest
import torch

from neurodit.downstream import nets
from neurodit.downstream.train import fit_classifier
from neurodit.errors import NeuroditError


def test_small_cnn_size_and_shapes():
    model = nets.build_classifier("small")
    assert 100_000 <= nets.count_parameters(model) <= 300_000
    assert nets.head_name(model) == "head"
    for side in (16, 32):
        assert model(torch.zeros(2, 1, side, side, side)).shape == (2, 2)


@pytest.mark.parametrize("arch", ["small", "resnet10", "densenet121"])
def test_transfer_copies_backbone_and_replaces_head(arch):
    torch.manual_seed(0)
    source = nets.build_classifier(arch)
    with torch.no_grad():  # make the source distinct from any fresh init (incl. BatchNorm buffers)
        for t in source.state_dict().values():
            if t.is_floating_point():
                t.add_(0.123)
    torch.manual_seed(1)
    target = nets.build_classifier(arch)
    fresh_head = {k: v.clone() for k, v in nets.split_state(target)[1].items()}
    copied = nets.transfer_backbone(target, source.state_dict())

    src_backbone, src_head = nets.split_state(source)
    tgt_backbone, tgt_head = nets.split_state(target)
    assert sorted(copied) == sorted(src_backbone) == sorted(tgt_backbone)
    assert len(tgt_backbone) > 3
    for key, tensor in src_backbone.items():
        assert torch.equal(tgt_backbone[key], tensor), key  # every backbone tensor equal
    assert set(tgt_head) == set(src_head) and len(tgt_head) == 2  # weight + bias of the last Linear
    for key in tgt_head:
        assert torch.equal(tgt_head[key], fresh_head[key])  # head keeps its own fresh initialisation
        assert not torch.equal(tgt_head[key], src_head[key])


def test_transfer_rejects_other_architecture():
    with pytest.raises(NeuroditError, match="lack backbone"):
        nets.transfer_backbone(nets.build_classifier("small"), nets.build_classifier("resnet10").state_dict())
    bad = nets.build_classifier("small").state_dict()
    bad["features.0.conv.weight"] = torch.zeros(4, 1, 3, 3, 3)
    with pytest.raises(NeuroditError, match="shape"):
        nets.transfer_backbone(nets.build_classifier("small"), bad)
    with pytest.raises(NeuroditError, match="unknown architecture"):
        nets.build_classifier("vgg")


def test_frozen_backbone_trains_head_only(make_set):
    data = make_set(12, side=16)
    source = nets.build_classifier("small")
    model = nets.build_classifier("small")
    nets.transfer_backbone(model, source.state_dict())
    trainable = nets.freeze_backbone(model)
    assert trainable == 96 * 2 + 2  # head weight + bias
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit_classifier(model, data.volumes, data.labels, data.volumes[:4], data.labels[:4], epochs=2, patience=5,
                   frozen_backbone=True, batch_size=4)
    backbone, head = nets.split_state(model)
    assert all(torch.equal(backbone[k], before[k]) for k in backbone)
    assert any(not torch.equal(head[k], before[k]) for k in head)
    assert np.isfinite(sum(float(v.sum()) for v in head.values()))

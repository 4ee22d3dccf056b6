"""neurodit.optim: the fused AdamW is AdamW, the bare step trains, the thread choice is a real choice."""

from __future__ import annotations

import pytest
import torch

from neurodit.diffusion import DiffusionConfig, create_diffusion
from neurodit.optim import adamw, bare_step, pick_fastest, pick_threads, time_calls, usable_cores


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_fused_adamw_matches_torch_default():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    b.load_state_dict(a.state_dict())
    fused, plain = adamw(a.parameters(), lr=1e-2, weight_decay=0.1), torch.optim.AdamW(b.parameters(), lr=1e-2,
                                                                                         weight_decay=0.1)
    assert fused.defaults["fused"] is True
    x = torch.randn(16, 8)
    for _ in range(5):
        for net, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


class _Net(torch.nn.Module):
    """A network with the DiT's call signature: (x, timestep=, class_labels=) -> .sample."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 16)

    def forward(self, x, timestep=None, class_labels=None):
        out = self.lin(x.flatten(1)).view_as(x)
        return type("Out", (), {"sample": out})()


def test_bare_step_lowers_the_loss_and_pick_threads_chooses(restore_threads):
    torch.manual_seed(0)
    net = _Net()
    process = create_diffusion(DiffusionConfig(objective="flow"))
    x, y = torch.randn(32, 1, 4, 4), torch.zeros(32, dtype=torch.long)
    step = bare_step(net, process, x, y, None, adamw(net.parameters(), lr=1e-2))
    first = float(step())
    for _ in range(60):
        last = float(step())
    assert last < first  # flow loss on a fixed batch (random t and noise per call)
    assert len(time_calls(step, 3)) == 3 and all(t > 0 for t in time_calls(step, 2, warmup=0))
    choice = pick_threads(step, rounds=2)
    cores = usable_cores()
    assert choice["threads"] == torch.get_num_threads() and choice["threads"] in (1, cores)
    if cores > 1:
        assert choice["picked_by"] == "timing" and set(choice["trial_s"]) == {"1", str(cores)}
        assert choice["trial_s"][str(choice["threads"])] == min(choice["trial_s"].values())
    big = pick_threads(step, max_step_s=0.0)  # a "large" step: all cores, untried
    assert big["threads"] == cores == torch.get_num_threads() and big["trial_s"] == {}


def test_pick_fastest_takes_the_lowest_median():
    """Every candidate is called once untimed, then once a round in turn; the lowest median wins."""
    import time

    calls = {"slow": 0, "fast": 0}

    def make(name, seconds):
        def step():
            calls[name] += 1
            time.sleep(seconds)
        return step

    res = pick_fastest({"slow": make("slow", 0.02), "fast": make("fast", 0.002)}, rounds=3)
    assert res["pick"] == "fast" and res["picked_by"] == "timing" and calls == {"slow": 4, "fast": 4}
    assert res["trial_s"]["slow"] > res["trial_s"]["fast"] > 0
    # a preferred candidate stays unless another beats it by more than the margin
    near = pick_fastest({"a": make("slow", 0.010), "b": make("fast", 0.009)}, rounds=3, prefer="a", margin=0.5)
    assert near["pick"] == "a"
    assert pick_fastest({"a": make("slow", 0.02), "b": make("fast", 0.002)}, prefer="a")["pick"] == "b"

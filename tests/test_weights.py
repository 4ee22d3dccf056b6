"""neurodit.weights: the one loader of user weights. A real malicious pickle (its ``__reduce__`` creates a
file when unpickled) is refused by every entry point -- the loader, ``--init`` and the judge's
``--encoder`` through the CLI (exit 2) -- and the file is never created."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from neurodit.errors import NeuroditError
from neurodit.weights import is_torchscript, load_checkpoint, load_state_dict, load_torchscript


class Payload:
    """Unpickling this calls ``open(marker, "w")``: a file appears if anything ever unpickles it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious(path: Path, marker: Path) -> Path:
    torch.save({"weight": torch.zeros(2), "boom": Payload(marker)}, path)  # a torch zip with a live pickle
    return path


def test_the_payload_is_live(tmp_path):
    # proof that the test pickle would really create a file if it were unpickled
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Payload(probe)))
    assert probe.exists()


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt"])
def test_malicious_pickle_refused_and_runs_nothing(tmp_path, suffix):
    marker = tmp_path / "pwned"
    evil = malicious(tmp_path / f"evil{suffix}", marker)
    with pytest.raises(NeuroditError, match=rf"evil\{suffix}: refused to load with weights_only=True: "
                                            r"the pickle would import io\.open"):
        load_state_dict(evil)
    assert not marker.exists()


def test_plain_tensor_files_round_trip(tmp_path):
    sd = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4, dtype=torch.int64)}
    torch.save(sd, tmp_path / "w.pt")
    save_file(sd, tmp_path / "w.safetensors")
    for name in ("w.pt", "w.safetensors"):
        out = load_state_dict(tmp_path / name)
        assert set(out) == {"a", "b"} and all(torch.equal(out[k], sd[k]) for k in sd)
    nested = {"model": sd, "step": 3}
    torch.save(nested, tmp_path / "n.pt")
    assert load_checkpoint(tmp_path / "n.pt")["step"] == 3
    with pytest.raises(NeuroditError, match=r"n\.pt: weights file holds no state dict"):
        load_state_dict(tmp_path / "n.pt")


def test_missing_truncated_corrupt(tmp_path):
    with pytest.raises(NeuroditError, match=r"absent\.safetensors: weights file not found"):
        load_state_dict(tmp_path / "absent.safetensors")
    sd = {"a": torch.zeros(100)}
    save_file(sd, tmp_path / "w.safetensors")
    blob = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(blob[:-40])
    with pytest.raises(NeuroditError, match=r"cut\.safetensors: truncated or corrupt safetensors file "
                                            r"\(.*incomplete metadata"):
        load_state_dict(tmp_path / "cut.safetensors")
    torch.save(sd, tmp_path / "w.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "w.pt").read_bytes()[:200])
    with pytest.raises(NeuroditError, match=r"cut\.pt: truncated or corrupt weights \(RuntimeError"):
        load_state_dict(tmp_path / "cut.pt")


def test_torchscript_only_after_the_zip_check(tmp_path):
    marker = tmp_path / "pwned"
    evil = malicious(tmp_path / "evil.pt", marker)
    assert not is_torchscript(evil)  # a torch.save zip: data.pkl, no code/
    with pytest.raises(NeuroditError, match=r"evil\.pt: not a TorchScript archive"):
        load_torchscript(evil)
    assert not marker.exists()
    ts = torch.jit.script(torch.nn.Linear(2, 1))
    ts.save(str(tmp_path / "ok.pt"))
    assert is_torchscript(tmp_path / "ok.pt")
    assert load_torchscript(tmp_path / "ok.pt")(torch.zeros(1, 2)).shape == (1, 1)

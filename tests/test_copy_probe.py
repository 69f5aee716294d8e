"""bench/copy_probe.py: the induction test tells a model that copies from one that does not."""

import importlib.util
import math
from pathlib import Path

import torch

SPEC = importlib.util.spec_from_file_location(
    "copy_probe", Path(__file__).resolve().parent.parent / "bench" / "copy_probe.py"
)
copy_probe = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(copy_probe)
VOCAB, LENGTH = 64, 6


class Copier(torch.nn.Module):
    """Predicts the token `LENGTH` positions back: exactly what an induction head does on a repeat."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*idx.shape, VOCAB)
        for t in range(LENGTH, idx.shape[1]):
            logits[torch.arange(idx.shape[0]), t, idx[:, t - LENGTH + 1]] = 20.0
        return logits


class Blind(torch.nn.Module):
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*idx.shape, VOCAB)


def test_a_copying_model_predicts_the_repeat_and_a_blind_one_does_not():
    ids = copy_probe.repeated_sequences(VOCAB, LENGTH, rows=8, seed=0)
    assert torch.equal(ids[:, 1 : 1 + LENGTH], ids[:, 1 + LENGTH :])
    copier = copy_probe.copy_scores(Copier(), ids, LENGTH)
    assert copier["repeat_top1"] == 1.0 and copier["loss_repeat"] < 1e-6
    blind = copy_probe.copy_scores(Blind(), ids, LENGTH)
    assert math.isclose(blind["loss_repeat"], math.log(VOCAB), rel_tol=1e-5)
    assert math.isclose(blind["loss_first"], math.log(VOCAB), rel_tol=1e-5)

"""No host reads inside a training step, checked on CPU (issue #8).

A GPU step must not wait for the device: no ``.item()``, ``.tolist()``, ``bool(tensor)`` or
data-dependent shapes. ``tests/test_gpu_sync.py`` checks that on CUDA with
``set_sync_debug_mode("error")``; here every family's step (forward, loss, backward, gradient
clipping, the guarded fused AdamW) runs under ``FakeTensorMode``, where each of those reads
raises ``DataDependentOutputException`` / ``DynamicOutputShapeException``. So this catches the
same mistakes on a machine without a GPU.
"""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from audiossl.models.families import get_family, num_codebooks
from audiossl.pretrain.health import GuardedAdamW


def _step(family: str, batch: int = 3, seconds: float = 1.5) -> torch.Tensor:
    fam = get_family(family)
    cfg = fam.CONFIGS["tiny"]()
    model = fam.build_pretrain_model(cfg).train()
    opt = GuardedAdamW(model.parameters(), lr=1e-4)
    sr = int(cfg.sample_rate)
    num_samples = int(seconds * sr)
    wavs = torch.randn(batch, num_samples)
    # per-item lengths made on the device, as the collater's are after .to(device): not constants
    lengths = num_samples - torch.randint(0, num_samples // 3, (batch,))
    if getattr(fam, "METRICS", None) is not None and "masked_acc" not in fam.METRICS:
        targets = torch.zeros(batch, 0, dtype=torch.long)  # audio-only (tokenizer) families
    else:
        t = model.encoder.num_frames(num_samples)
        c = num_codebooks(fam, cfg)
        targets = torch.randint(0, cfg.num_classes, (batch, t) if c == 1 else (batch, t, c))
    out = model(wavs, lengths, targets)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return out.loss


@pytest.mark.parametrize("family", ["hubert", "mert", "rvq", "wavlm", "data2vec2"])
def test_training_step_reads_nothing_back_to_the_host(family):
    torch.manual_seed(0)
    with FakeTensorMode():
        loss = _step(family)
    assert loss.shape == ()


def test_data2vec2_teacher_update_reads_nothing_back_to_the_host():
    """The EMA step between optimizer steps (the decay comes from the host-side step number)."""
    from audiossl.models.data2vec2 import build_data2vec2, data2vec2_tiny

    with FakeTensorMode():
        model = build_data2vec2(data2vec2_tiny()).train()
        for step in (1, 2, 3):
            model.before_train_step(step)
            model(torch.randn(2, 8000), None).loss.backward()
    assert model.num_updates.shape == ()


def test_the_check_catches_a_host_read():
    """A control: the same harness fails on a step that calls ``.item()``."""
    from torch._subclasses.fake_tensor import DataDependentOutputException

    with FakeTensorMode(), pytest.raises(DataDependentOutputException):
        x = torch.randn(4, requires_grad=True)
        if x.sum().item() > 0:  # the kind of line that stalls a GPU step
            x.sum().backward()


def test_beats_training_step_reads_nothing_back_to_the_host(monkeypatch):
    """BEATs' fbank has an eager-CPU fast path that reads (CPU) lengths; GPUs and compiled steps
    take the batched path, which is the one checked here."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    torch.manual_seed(0)
    with FakeTensorMode():
        loss = _step("beats", seconds=2.0)
    assert loss.shape == ()


def test_beats_tokenizer_step_with_its_teacher_reads_nothing_back(monkeypatch):
    """The distillation step runs the frozen teacher upstream inside the step; after the one-off
    k-means initialisation of the codebook (first step, documented), nothing is read back."""
    from audiossl.upstream.encoder import EncoderUpstream
    from audiossl.models.hubert.model import HubertModel, hubert_tiny
    from audiossl.tokenizers.beats.model import BeatsTokenizer, beats_tokenizer_tiny

    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # the device path; see the BEATs test
    torch.manual_seed(0)
    with FakeTensorMode():
        model = BeatsTokenizer(beats_tokenizer_tiny(teacher="in-memory", teacher_dim=128)).train()
        model._teacher.append(EncoderUpstream(HubertModel(hubert_tiny())))
        model.quantizer._initialised = True  # as after the first step
        opt = GuardedAdamW(model.parameters(), lr=1e-4)
        wavs = torch.randn(3, 32000)
        lengths = 32000 - torch.randint(0, 8000, (3,))
        out = model(wavs, lengths)
        out.loss.backward()
        opt.step()
    assert out.loss.shape == ()


class _TwoRankGang:
    """A data-parallel gang of size 2 seen from rank 0: ``all_reduce`` records the step and leaves
    the tensor as is (a real reduction is not needed to see *whether* the step syncs)."""

    size, rank, device = 2, 0, torch.device("cpu")

    def __init__(self) -> None:
        self.step: int | None = None
        self.calls: list[int | None] = []

    def all_reduce(self, tensor, op) -> None:
        self.calls.append(self.step)


def test_two_rank_stop_check_reads_the_host_only_every_k_steps():
    """With 2 ranks the stop agreement (a collective and a host read) runs at multiples of
    ``stop_check_every`` only. A per-step ``int(all_sum(...))`` fails here: it raises under
    ``FakeTensorMode`` between agreement points, and it shows up in the gang's calls."""
    from types import SimpleNamespace

    from torch._subclasses.fake_tensor import DataDependentOutputException

    from audiossl.pretrain.health import StopSignal
    from audiossl.pretrain.stoppable import StoppableTrainer

    gang, k = _TwoRankGang(), 4
    trainer = SimpleNamespace(_stop_signal=StopSignal(), _dp_gang=gang, _stop_check_every=k, _stop_name=None, _step_nr=0)
    for step in range(1, 3 * k + 1):
        trainer._step_nr = gang.step = step
        with FakeTensorMode():
            if step % k:
                assert StoppableTrainer._stop_now(trainer) is False, step
            else:  # the agreement point: here, and only here, the host waits for the collective
                with pytest.raises(DataDependentOutputException):
                    StoppableTrainer._stop_now(trainer)
    assert gang.calls == [k, 2 * k, 3 * k]

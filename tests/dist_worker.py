"""``torchrun`` entry point for tests/test_distributed_training.py: the real CLI
(``audiossl.cli.main``) plus an optional fault on one rank.

``AUDIOSSL_TEST_FAULT=RANK:STEP:SIG`` sends ``SIG`` (``KILL`` or ``TERM``) to this process on rank
``RANK`` as step ``STEP`` begins, i.e. after step ``STEP - 1`` finished (what the OOM killer or
Slurm would do, but at a known step, so the test has no race).

    torchrun --standalone --nproc_per_node=2 tests/dist_worker.py pretrain --manifest-dir ... --out ...
"""

from __future__ import annotations

import os
import signal
import sys


def _install_fault(spec: str) -> None:
    rank, step, sig = spec.split(":")
    if int(os.environ.get("RANK", "0")) != int(rank):
        return
    from audiossl.pretrain.unit import PretrainTrainUnit

    orig = PretrainTrainUnit.set_step_nr

    def set_step_nr(self, step_nr: int) -> None:
        if step_nr == int(step):
            os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))
        orig(self, step_nr)

    PretrainTrainUnit.set_step_nr = set_step_nr  # type: ignore[method-assign]


if __name__ == "__main__":
    if os.environ.get("AUDIOSSL_TEST_FAULT"):
        _install_fault(os.environ["AUDIOSSL_TEST_FAULT"])
    from audiossl.cli.main import main

    sys.exit(main(sys.argv[1:]))

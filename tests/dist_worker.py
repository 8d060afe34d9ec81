"""``torchrun`` entry point for tests/test_distributed_training.py: the real CLI
(``audiossl.cli.main``) plus an optional fault on one rank.

``AUDIOSSL_TEST_FAULT=RANK:STEP:SIG`` sends ``SIG`` (``KILL`` or ``TERM``) to this process on rank
``RANK`` as step ``STEP`` begins, i.e. after step ``STEP - 1`` finished (what the OOM killer or
Slurm would do, but at a known step, so the test has no race). With ``AUDIOSSL_TEST_EXIT_DIR`` set,
each rank writes its exit status to ``DIR/rank<R>`` before exiting.

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

    code = main(sys.argv[1:])
    if os.environ.get("AUDIOSSL_TEST_EXIT_DIR"):  # torchrun reports only the first rank to fail
        exit_dir = os.environ["AUDIOSSL_TEST_EXIT_DIR"]
        os.makedirs(exit_dir, exist_ok=True)
        with open(os.path.join(exit_dir, f"rank{os.environ.get('RANK', '0')}"), "w") as f:
            f.write(str(code))
    sys.exit(code)

"""The README's "Coming from s3prl / lhotse / fairseq" commands run as written (``/path/to/`` →
a temporary directory holding a checkpoint / CutSet the test builds) and each exits 0."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiossl.cli.main import main

README = Path(__file__).resolve().parents[1] / "README.md"


def section_commands() -> list[str]:
    text = README.read_text()
    sec = text.split("### Coming from s3prl / lhotse / fairseq", 1)[1]
    block = re.search(r"```bash\n(.*?)```", sec, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_bridge_commands_run(tmp_path):
    pytest.importorskip("lhotse")
    pytest.importorskip("s3prl")
    from lhotse import CutSet, Recording

    from audiossl.models.hubert.fairseq import export_fairseq
    from audiossl.interop.fairseq_w2v import hf_to_fairseq_state_dict
    from tests.test_fairseq_w2v import CASES, _fairseq_cfg, _random_hf
    from tests.test_s3prl_upstream import _tiny

    export_fairseq(_tiny("layer_norm", True), tmp_path / "hubert.pt")
    kind, extra, _ = CASES["wavlm-base"]
    mc = _fairseq_cfg(extra)
    torch.save({"cfg": mc, "model": hf_to_fairseq_state_dict(_random_hf(kind, mc))}, tmp_path / "wavlm_base.pt")
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), 16000)
    rec = Recording.from_file(tmp_path / "audio" / "a.wav", recording_id="a")
    CutSet.from_cuts([rec.to_cut()]).to_file(tmp_path / "cuts_train.jsonl.gz")

    commands = section_commands()
    assert len(commands) == 4 and all("/path/to/" in c for c in commands)
    for cmd in commands:
        argv = shlex.split(cmd.replace("/path/to/", f"{tmp_path}/"))
        assert argv[0] == "audiossl"
        assert main(argv[1:]) == 0, cmd
    assert (tmp_path / "feats_s3prl" / "a.npy").is_file() and (tmp_path / "feats_wavlm" / "a.npy").is_file()
    assert list(CutSet.from_file(tmp_path / "cuts_back.jsonl.gz").ids) == list(CutSet.from_file(tmp_path / "cuts_train.jsonl.gz").ids)

"""Every ```bash / ```sh block of README.md runs, in README order, in one workspace on tiny data.

What runs differs from the README only by the rewrites listed here: placeholder paths point at
tiny trees, recipes at tiny models, training at 4 steps. A block must be listed in ``BLOCKS`` (by
its first command) either to run or with the reason it cannot run here, so a new README block
that this file does not handle fails the test rather than being skipped silently.

The workspace holds ``recipes -> <repo>/recipes``, ``data -> demo/speech`` and
``music -> demo/music/notes`` (``demo`` is what the README's ``audiossl synth demo`` writes), a
LibriSpeech-layout tree for ``/data/LibriSpeech`` and a tiny random WavLM for ``hf:/models/...``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# first command of a block → None (run it) or the reason it does not run here
BLOCKS: dict[str, str | None] = {
    "make demo": "`make test` is what runs this file, and `make demo` is tests/test_recipe_demo.py (egs/demo/run.sh)",
    "audiossl synth demo": None,
    "audiossl features mfcc data/train.tsv": None,
    "audiossl tokenizer label random-projection": None,
    "audiossl tokenizer train rvq": None,
    "audiossl bench runs/it1/checkpoint": None,
    "audiossl report demo_out": "it reads what `make demo` wrote; tests/test_recipe_demo.py runs it (egs/demo/run.sh stage 9) "
    "and checks the report, tests/test_summary_report.py on hand-made trees",
    "python tools/layer_probe.py demo_out/bench/mert": "it reads the bench cache `make demo` wrote; "
    "tests/test_layer_probe.py runs it on a hand-made bench cache",
    "audiossl extract s3prl:hubert_local:/path/to/hubert.pt": "tests/test_readme_bridges.py runs it verbatim on the "
    "s3prl/fairseq checkpoints and the lhotse CutSet it builds",
}

# README text → what runs here, applied to every block in this order.
REWRITES: list[tuple[str, str]] = [
    ("--size small", "--size tiny --tasks speech,music_notes"),        # the demo corpus, speech + notes only
    ("/data/LibriSpeech", "{librispeech}"),
    ("--k 100 --percent 0.1", "--k 8 --percent 1.0"),
    ("--layer 6", "--layer 1"),                                         # HuBERT tiny has 2 layers
    # README recipes → tiny: HuBERT keeps base.yaml (its label rate and class count come from the
    # labels' sidecar) with a tiny model and tiny batches; the others use the family's tiny recipes.
    ("--config recipes/hubert/base.yaml", "--config recipes/hubert/base.yaml {tiny_hubert}"),
    ("recipes/beats/base.yaml", "recipes/beats/tiny.yaml"),
    ("recipes/beats/tokenizer_base.yaml", "recipes/beats/tokenizer_tiny.yaml"),
    ("recipes/mert/rvq_base.yaml", "recipes/mert/rvq_tiny.yaml"),
    ("recipes/mert/95m.yaml", "recipes/mert/tiny.yaml"),
    ("hf:/models/wavlm-base", "hf:{wavlm}"),
    ("--data demo_out/hubert/corpus", "--data demo --tasks pr --epochs 1"),  # where `make demo` puts the corpus
    ("--lr-grid 1e-4,1e-3,1e-2", "--lr-grid 1e-3,1e-2"),
]

# Lines that cannot run here: README text they start with → reason (each must occur in the README).
SKIPPED_LINES: dict[str, str] = {
    "torchrun --nproc_per_node=8": "a multi-GPU launch; the same CLI runs single-process in this block",
    "audiossl tokenizer label encodec /models/encodec_24khz": "needs a downloaded EnCodec model; tests/test_encodec_codes.py covers that path",
}

TRAINING = ("audiossl pretrain ", "audiossl tokenizer train ")
TINY_HUBERT = "model.size=tiny data.max_tokens=96000 data.max_sample_size=32000 data.min_sample_size=4000 data.num_workers=0"
STEPS = "--max-steps 4"


def readme_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, body)`` of every ```bash / ```sh fence."""
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in re.finditer(r"^```(?:bash|sh)\n(.*?)^```", text, re.S | re.M)]


def commands(body: str) -> list[str]:
    """Logical command lines: continuations joined, trailing comments dropped, blank lines removed."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(" ".join(line.split()))
    return out


def block_key(body: str) -> str:
    first = commands(body)[0]
    keys = [k for k in BLOCKS if first.startswith(k)]
    if len(keys) != 1:
        raise AssertionError(f"README block starting {first!r} is not handled by tests/test_readme_commands.py: "
                             f"add its first command to BLOCKS (to run it, or with the reason it cannot run here)")
    return keys[0]


def rewrite(cmd: str, values: dict[str, str]) -> str:
    for key, reason in SKIPPED_LINES.items():
        if cmd.startswith(key):
            return f": 'skipped: {reason}'"
    for old, new in REWRITES:
        cmd = cmd.replace(old, new)
    if cmd.startswith(TRAINING):
        cmd += f" {STEPS}"
    return cmd.format(**values)


def _blocks() -> list[tuple[int, str]]:
    return readme_blocks(README.read_text(encoding="utf-8"))


def test_every_block_is_handled_and_every_rule_is_used():
    text = README.read_text(encoding="utf-8")
    blocks = _blocks()
    assert blocks, "no ```bash blocks found in README.md"
    keys = [block_key(body) for _, body in blocks]
    assert sorted(keys) == sorted(BLOCKS), f"BLOCKS entries with no README block: {sorted(set(BLOCKS) - set(keys))}"
    stale = [old for old, _ in REWRITES if old not in text] + [k for k in SKIPPED_LINES if k not in text]
    assert not stale, f"rewrites/skips for README text that is gone: {stale}"


def test_block_parsing():
    body = "a --x 1 \\\n    --y 2   # note\n# comment\n\nb\n"
    assert commands(body) == ["a --x 1 --y 2", "b"]
    with pytest.raises(AssertionError, match="not handled"):
        block_key("audiossl frobnicate --all\n")
    assert rewrite("audiossl pretrain --config recipes/beats/base.yaml --out r", {}) == \
        "audiossl pretrain --config recipes/beats/tiny.yaml --out r --max-steps 4"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    from tests.fake_corpora import make_librispeech

    ws = tmp_path_factory.mktemp("readme")
    (ws / "recipes").symlink_to(ROOT / "recipes")
    (ws / "data").symlink_to("demo/speech")
    (ws / "music").symlink_to("demo/music/notes")
    ls = make_librispeech(ws / "corpora", splits=("train-clean-100", "dev-clean"))["root"]
    return ws, {"librispeech": str(ls), "wavlm": str(_tiny_wavlm(ws / "wavlm")), "tiny_hubert": TINY_HUBERT}


def _tiny_wavlm(out: Path) -> Path:
    """A randomly initialised 2-layer WavLM in transformers' layout (stands in for wavlm-base)."""
    from transformers import WavLMConfig, WavLMModel

    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    WavLMModel(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def results(workspace) -> dict[int, subprocess.CompletedProcess]:
    """Run every runnable block in README order (later blocks use what earlier ones wrote)."""
    ws, values = workspace
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", OMP_NUM_THREADS="1")
    out = {}
    for line, body in _blocks():
        if BLOCKS[block_key(body)] is not None:
            continue
        script = "set -euxo pipefail\n" + "\n".join(rewrite(c, values) for c in commands(body))
        out[line] = subprocess.run(["bash", "-c", script], cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("line, body", _blocks(), ids=[f"README.md:{n}" for n, _ in _blocks()])
def test_readme_block_runs(line, body, results):
    reason = BLOCKS[block_key(body)]
    if reason is not None:
        pytest.skip(reason)
    r = results[line]
    assert r.returncode == 0, f"README.md block at line {line} failed:\n{r.stdout[-2000:]}\n{r.stderr[-6000:]}"

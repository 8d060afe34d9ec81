"""Every verb is listed; every built verb answers --help with its defaults."""

import subprocess
import sys

import pytest

from audiossl.cli.main import VERBS, main, make_parser


def test_top_level_help_lists_every_verb(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in ["synth", "prepare", "validate", "features", "kmeans", "pretrain", "extract", "export", "bench"]:
        assert verb in VERBS and f"  {verb}" in out


@pytest.mark.parametrize("verb", [v for v, (m, _) in VERBS.items() if m])
def test_each_built_verb_has_help(verb):
    parser, _ = make_parser(verb)
    text = parser.format_help()
    assert text.startswith(f"usage: audiossl {verb}")


def test_unknown_and_unbuilt_verbs(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown verb" in capsys.readouterr().err
    unbuilt = [v for v, (m, _) in VERBS.items() if m is None]
    if unbuilt:
        assert main([unbuilt[0]]) == 2
        assert "not built yet" in capsys.readouterr().err


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "audiossl", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "verbs:" in r.stdout


def test_validate_cli_reports_and_continues(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "ok.wav", 0.1 * np.ones(16000, np.float32), 16000)
    (tmp_path / "bad.wav").write_bytes(b"")
    rc = main(["validate", str(tmp_path), "--workers", "1", "--report", str(tmp_path / "r.jsonl")])
    out = capsys.readouterr().out
    assert rc == 0 and "bad.wav: empty" in out and "1 good; 1 skipped" in out
    assert main(["validate", str(tmp_path), "--workers", "1", "--strict"]) == 1
    assert (tmp_path / "r.jsonl").read_text().count("\n") == 1

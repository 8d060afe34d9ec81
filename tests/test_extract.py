"""The extractor: formats, layer selection, batching = one-by-one, chunking, resume, bad files, CLIs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from audiossl.cli.main import main
from audiossl.upstream.encoder import EncoderUpstream
from audiossl.upstream.load import load_upstream
from audiossl.extract.run import extract, ExtractConfig, list_inputs
from audiossl.upstream.engine import forward_long
from audiossl.models.checkpoint import save_checkpoint
from audiossl.models.hubert.model import HubertModel, build_hubert, hubert_tiny

CONV = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2
LENGTHS = {"a": 16000, "sub/b": 9000, "c": 23000, "d": 4100}


def tiny(**kw):
    base = dict(conv_layers=CONV, embed_dim=32, num_layers=2, num_heads=2, ffn_dim=64, pos_conv_kernel=16, pos_conv_groups=4)
    base.update(kw)
    return hubert_tiny(**base)


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "wavs"
    for name, n in LENGTHS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / f"{name}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
    (root / "broken.wav").write_bytes(b"RIFF not really a wav file")
    sf.write(root / "tiny.wav", np.zeros(100, dtype=np.float32), 16000)  # shorter than one frame
    return root


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(HubertModel(tiny()), tmp_path / "ckpt")


def test_list_inputs_ids(corpus, tmp_path):
    ids = dict(list_inputs(corpus))
    assert set(ids) == set(LENGTHS) | {"broken", "tiny"}
    scp = tmp_path / "wav.scp"
    scp.write_text(f"utt1 {corpus / 'a.wav'}\nutt2 {corpus / 'c.wav'}\n")
    assert [u for u, _ in list_inputs(scp)] == ["utt1", "utt2"]
    manifest = tmp_path / "train.tsv"
    manifest.write_text(f"{corpus}\nsub/b.wav\t9000\na.wav\t16000\n")
    assert [u for u, _ in list_inputs(manifest)] == ["sub/b", "a"]
    scp.write_text(f"../escape {corpus / 'a.wav'}\n")
    with pytest.raises(ValueError, match="outside the output directory"):
        list_inputs(scp)


def test_npy_all_layers_resume_and_bad_files(corpus, ckpt, tmp_path):
    out = tmp_path / "feats"
    report = extract(str(ckpt), corpus, out, ExtractConfig(max_seconds=3.0))
    assert report.written == 4 and report.already_done == 0
    reasons = {p.split("/")[-1]: r for p, r in report.skipped}
    assert set(reasons) == {"broken.wav", "tiny.wav"} and reasons["tiny.wav"].startswith("too_short")
    up = load_upstream(str(ckpt))
    index = (out / "index.tsv").read_text().splitlines()
    assert index[0] == "id\tshape\tframe_rate" and len(index) == 5
    for uid, n in LENGTHS.items():
        arr = np.load(out / f"{uid}.npy")
        assert arr.shape == (3, up.num_frames(n), 32) and arr.dtype == np.float32
        assert f"{uid}\t3x{up.num_frames(n)}x32\t50" in index
    # padded batches give the same numbers as one utterance per forward
    wav, _ = sf.read(corpus / "sub/b.wav", dtype="float32")
    single = up(torch.from_numpy(wav)[None]).hidden_states
    np.testing.assert_allclose(np.load(out / "sub/b.npy"), torch.stack(single)[:, 0].numpy(), atol=1e-5, rtol=1e-4)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["upstream"] == f"hubert:{ckpt}" and meta["num_layers"] == 3
    # resume: a second run does nothing but the bad files are reported again
    mtime = (out / "a.npy").stat().st_mtime_ns
    again = extract(str(ckpt), corpus, out, ExtractConfig(max_seconds=3.0))
    assert again.written == 0 and again.already_done == 4 and len(again.skipped) == 2
    assert (out / "a.npy").stat().st_mtime_ns == mtime
    # resuming with other settings would mix shapes: refused
    with pytest.raises(ValueError, match="other settings"):
        extract(str(ckpt), corpus, out, ExtractConfig(layers="1"))
    # a deleted output is redone
    (out / "c.npy").unlink()
    assert extract(str(ckpt), corpus, out, ExtractConfig()).written == 1


def test_hdf5_weighted_and_ark_mean(corpus, ckpt, tmp_path):
    import h5py
    import kaldiio

    wfile = tmp_path / "featurizer.json"
    wfile.write_text(json.dumps({"weights": [0.0, 1.0, 2.0]}))
    out = tmp_path / "h5"
    extract(str(ckpt), corpus, out, ExtractConfig(layers=f"weighted:{wfile}", format="hdf5"))
    full = tmp_path / "full"
    extract(str(ckpt), corpus, full, ExtractConfig(layers="all"))
    w = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0).numpy()
    with h5py.File(out / "feats.h5", "r") as f:
        assert set(f) == set(LENGTHS) - {"sub/b"} | {"sub"}
        np.testing.assert_allclose(f["a"][()], np.einsum("l,ltd->td", w, np.load(full / "a.npy")), atol=1e-5)
    out2 = tmp_path / "ark"
    extract(str(ckpt), corpus, out2, ExtractConfig(layers="1", pool="mean", format="ark"))
    feats = dict(kaldiio.load_scp(str(out2 / "feats.scp")))
    np.testing.assert_allclose(feats["c"], np.load(full / "c.npy")[1].mean(0), atol=1e-5)
    # the bench harness's results JSON carries normalised "layer_weights": used as given
    (tmp_path / "result.json").write_text(json.dumps({"task": "x", "layer_weights": [0.0, 0.0, 1.0]}))
    out3 = tmp_path / "picked"
    extract(str(ckpt), corpus, out3, ExtractConfig(layers=f"weighted:{tmp_path / 'result.json'}"))
    np.testing.assert_allclose(np.load(out3 / "a.npy"), np.load(full / "a.npy")[2], atol=1e-6)
    # a featurizer state dict in safetensors: raw logits, softmax applied
    from safetensors.torch import save_file

    save_file({"featurizer.weights": torch.tensor([0.0, 1.0, 2.0])}, str(tmp_path / "feat.safetensors"))
    out4 = tmp_path / "st"
    extract(str(ckpt), corpus, out4, ExtractConfig(layers=f"weighted:{tmp_path / 'feat.safetensors'}"))
    np.testing.assert_allclose(np.load(out4 / "a.npy"), np.einsum("l,ltd->td", w, np.load(full / "a.npy")), atol=1e-5)
    with pytest.raises(ValueError, match="ark stores matrices"):
        extract(str(ckpt), corpus, tmp_path / "ark2", ExtractConfig(layers="0,2", format="ark"))
    with pytest.raises(ValueError, match="out of range"):
        extract(str(ckpt), corpus, tmp_path / "x", ExtractConfig(layers="5"))


def test_chunked_long_file_matches_single_pass(tmp_path):
    torch.manual_seed(0)
    up = EncoderUpstream(build_hubert(tiny(extractor_mode="layer_norm", layer_norm_first=True, conv_bias=True)).encoder)
    wav = torch.randn(16000 * 6 + 123)
    one = up(wav[None]).hidden_states
    chunked = forward_long(up, wav, chunk_seconds=2.0, overlap_seconds=0.5)
    assert [h.shape[0] for h in chunked] == [up.num_frames(wav.shape[0])] * 3
    # conv + positional conv part: exact (the overlap covers the 16-frame pos conv)
    torch.testing.assert_close(chunked[0], one[0][0], atol=1e-5, rtol=1e-4)
    # transformer layers see less context at chunk edges: close, not equal
    for c, o in zip(chunked[1:], one[1:]):
        rel = (c - o[0]).norm() / o[0].norm()
        assert rel < 0.1, float(rel)


def test_extract_chunks_long_files_through_the_engine(corpus, ckpt, tmp_path):
    out = tmp_path / "chunked"
    extract(str(ckpt), corpus, out, ExtractConfig(chunk_seconds=0.6, overlap_seconds=0.2, layers="0"))
    up = load_upstream(str(ckpt))
    for uid, n in LENGTHS.items():
        assert np.load(out / f"{uid}.npy").shape == (up.num_frames(n), 32)


def test_fbank_and_bfloat16(corpus, tmp_path):
    out = tmp_path / "fb"
    rep = extract("fbank", corpus, out, ExtractConfig(dtype="bfloat16", chunk_seconds=0.5))
    assert rep.written == 4
    assert np.load(out / "a.npy").shape == (1, 98, 80)  # baselines are never chunked (per-utterance CMVN)


def test_extract_and_export_cli(corpus, tmp_path, capsys):
    import transformers

    torch.manual_seed(0)
    ckpt = save_checkpoint(build_hubert(tiny(embed_dim=48)), tmp_path / "pt")
    out = tmp_path / "cli"
    assert main(["extract", str(ckpt), str(corpus), str(out), "--layers", "-1", "--max-seconds", "2"]) == 0
    printed = capsys.readouterr().out
    assert "4 written, 0 already done (resume), 2 skipped" in printed and "broken.wav" in printed
    assert np.load(out / "a.npy").shape == (49, 48)
    assert main(["export", str(ckpt), "--to", "hf", str(tmp_path / "hf")]) == 0
    hf = transformers.HubertModel.from_pretrained(tmp_path / "hf").eval()
    wav = torch.from_numpy(sf.read(corpus / "a.wav", dtype="float32")[0])[None]
    with torch.no_grad():
        last = hf(wav).last_hidden_state[0].numpy()
    np.testing.assert_allclose(last, np.load(out / "a.npy"), atol=1e-4)
    assert main(["export", str(ckpt), "--to", "fairseq", str(tmp_path / "fs.pt")]) == 0
    assert main(["extract", "nope-dir", str(corpus), str(tmp_path / "z")]) == 2


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_prefetch_gives_the_same_files_and_reports_where_time_went(corpus, ckpt, tmp_path, prefetch):
    """Decoding ahead in a thread changes nothing in the output; the report splits the time."""
    ref = extract(str(ckpt), corpus, tmp_path / "ref", ExtractConfig(max_seconds=1.5, prefetch=0))
    out = tmp_path / f"p{prefetch}"
    report = extract(str(ckpt), corpus, out, ExtractConfig(max_seconds=1.5, prefetch=prefetch))
    assert report.written == ref.written == 4
    assert sorted(p for p, _ in report.skipped) == sorted(p for p, _ in ref.skipped)
    for uid in LENGTHS:
        np.testing.assert_array_equal(np.load(out / f"{uid}.npy"), np.load(tmp_path / "ref" / f"{uid}.npy"))
    assert report.audio_seconds == pytest.approx(sum(LENGTHS.values()) / 16000)
    assert report.forward_s > 0 and report.write_s > 0 and report.wait_s >= 0
    assert "forward" in report.timing() and "RTF" in report.timing()

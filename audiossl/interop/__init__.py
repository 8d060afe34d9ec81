"""Checkpoint and weight interop with other toolkits (torchaudio, fairseq, HF transformers, s3prl)."""

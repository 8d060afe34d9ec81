#!/usr/bin/env bash
# Creates .venv (when missing) and installs audiossl with its pinned stack into it.
# A no-op when pyproject.toml and this script are unchanged since the last successful install.
# Reads: pyproject.toml.  Writes: .venv/, .venv/.audiossl-installed (stamp).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${VENV:-.venv}
stamp="$VENV/.audiossl-installed"
want=$(cat pyproject.toml tools/install.sh | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
log() { echo "[install $(date +%H:%M:%S)] $*"; }
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
log "installing audiossl and its pinned stack (first time: ~6 min, ~7 GB with CUDA torch)"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[test,bench,parity]"
# tinysoundfont renders the demo corpus' music; its declared pyaudio dependency does not build
# without PortAudio headers and is not needed for offline rendering.
"$VENV/bin/python" -m pip install -q --no-deps tinysoundfont
# espnet (parity extra): only espnet2.asr.encoder.beats_encoder is used; its declared deps would
# downgrade setuptools / importlib-metadata and cannot resolve (ci_sdr -> padertorch git URL).
"$VENV/bin/python" -m pip install -q --no-deps "espnet==202511"
# fairseq2n dlopens libsndfile.so.1 and, failing the system one, looks in <venv>/lib: point it at
# the copy the soundfile wheel ships, so no system package is needed.
sndfile=$("$VENV/bin/python" -c "import _soundfile_data, glob, os; print(glob.glob(os.path.join(os.path.dirname(_soundfile_data.__file__), 'libsndfile*.so'))[0])")
ln -sf "$sndfile" "$VENV/lib/libsndfile.so.1"
"$VENV/bin/python" -c "import torch, torchaudio, fairseq2, s3prl, librosa, soundfile, tinysoundfont, espeakng_loader, pretty_midi, espnet2.asr.encoder.beats_encoder" \
  || { echo "install check failed: an import above does not work" >&2; exit 1; }
echo "$want" > "$stamp"
log "done"

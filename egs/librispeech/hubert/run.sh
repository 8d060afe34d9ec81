#!/usr/bin/env bash
# HuBERT on LibriSpeech, the fairseq recipe's two iterations, for a user with LibriSpeech on disk.
#
#   egs/librispeech/hubert/run.sh --librispeech /data/LibriSpeech [--exp DIR] [--stage N] [--stop_stage M]
#
# stage 0  prepare           reads $librispeech/<split>/...          writes $exp/data/{train,valid}.tsv (+ .wrd .ltr .spk)
# stage 1  MFCC              writes $exp/feats/mfcc/{train,valid}     (39-dim, 100 Hz)
# stage 2  km100 on MFCC     writes $exp/km/mfcc, labels $exp/it1/data/{train,valid}.km (100 Hz)
# stage 3  iteration 1       HuBERT Base, 250k steps (recipes/hubert/base.yaml) → $exp/it1/exp/checkpoint
# stage 4  layer-6 features  writes $exp/feats/it1_L6/{train,valid}
# stage 5  km500 on layer 6  writes $exp/km/it1, labels $exp/it2/data/{train,valid}.km (50 Hz)
# stage 6  iteration 2       HuBERT Base, 400k steps → $exp/it2/exp/checkpoint
#
# Multi-GPU: set launcher="torchrun --nproc_per_node=8" (or a srun line); the trainer reads the
# rank/world size from the environment. Every stage writes $exp/.done.stageN; reruns skip done stages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../utils/lib.sh"
root=$(cd "$here/../../.." && pwd)

librispeech=
exp=exp/librispeech_hubert
stage=0
stop_stage=6
train_splits="train-clean-100 train-clean-360 train-other-500"
valid_split=dev-clean
nj=16
k1=100
k2=500
layer=6
percent=0.1
steps1=250000
steps2=400000
launcher="python -m"
parse_options "$@"
[ -n "$librispeech" ] || die "--librispeech /path/to/LibriSpeech is required"

if run_stage 0 "prepare LibriSpeech manifests"; then
  audiossl prepare librispeech "$librispeech" "$exp/data/raw" --workers "$nj"
  python - "$exp/data" $train_splits -- "$valid_split" <<'PY'
import sys
from audiossl.data.manifest import Manifest, read_manifest, write_manifest
out, rest = sys.argv[1], sys.argv[2:]
sep = rest.index("--")
train, valid = rest[:sep], rest[sep + 1]
parts = [read_manifest(f"{out}/raw/{s}.tsv", labels=["wrd", "ltr", "spk"]) for s in train]
root = parts[0].root
rows, labels = [], {k: [] for k in parts[0].labels}
for p in parts:
    rel = p.root.relative_to(root) if p.root != root else None
    rows += [type(r)(str(rel / r.relpath) if rel else r.relpath, r.num_samples) for r in p.rows]
    for k in labels:
        labels[k] += p.labels[k]
write_manifest(Manifest(root, rows, labels), f"{out}/train.tsv")
v = read_manifest(f"{out}/raw/{valid}.tsv", labels=["wrd", "ltr", "spk"])
write_manifest(v, f"{out}/valid.tsv")
PY
  stage_done 0
fi

if run_stage 1 "MFCC features"; then
  for split in train valid; do
    audiossl features mfcc "$exp/data/$split.tsv" "$exp/feats/mfcc/$split" --workers "$nj"
  done
  stage_done 1
fi

# kmeans_labels FEATS NAME K ITER: fit k-means on $exp/feats/FEATS/train into $exp/km/NAME, then write
# $exp/ITER/data/{train,valid}.km beside copies of the manifests (the trainer's manifest dir).
kmeans_labels() {
  local feats=$exp/feats/$1 km=$exp/km/$2 k=$3 data=$exp/$4/data
  audiossl kmeans fit "$feats/train" "$km" --k "$k" --percent "$percent"
  mkdir -p "$data"
  for s in train valid; do
    cp "$exp/data/$s.tsv" "$data/$s.tsv"
    audiossl kmeans label "$km" "$feats/$s" "$data/$s.km" --manifest "$exp/data/$s.tsv" --fairseq-dict
  done
}

if run_stage 2 "k-means (k=$k1) on MFCC, label"; then
  kmeans_labels mfcc mfcc "$k1" it1
  stage_done 2
fi

pretrain() {
  $launcher audiossl.cli.main pretrain --config "$root/recipes/hubert/base.yaml" --manifest-dir "$exp/$1/data" \
    --train-split train --valid-split valid --labels km --out "$exp/$1/exp" --max-steps "$2" "model.num_classes=$3"
}

if run_stage 3 "HuBERT Base iteration 1"; then pretrain it1 "$steps1" "$k1"; stage_done 3; fi

if run_stage 4 "layer-$layer features of iteration 1"; then
  for s in train valid; do
    audiossl features model "$exp/data/$s.tsv" "$exp/feats/it1_L$layer/$s" --ckpt "$exp/it1/exp/checkpoint" --layer "$layer"
  done
  stage_done 4
fi

if run_stage 5 "k-means (k=$k2) on layer $layer, label"; then
  kmeans_labels "it1_L$layer" it1 "$k2" it2
  stage_done 5
fi

if run_stage 6 "HuBERT Base iteration 2"; then pretrain it2 "$steps2" "$k2"; stage_done 6; fi
log "finished stages $stage..$stop_stage in $exp"

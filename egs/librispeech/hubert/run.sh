#!/usr/bin/env bash
# HuBERT on LibriSpeech, the fairseq recipe's two iterations, for a user with LibriSpeech on disk.
#
#   egs/librispeech/hubert/run.sh --librispeech /data/LibriSpeech [--size tiny|base|large | --config YAML]
#       [--exp DIR] [--stage N] [--stop_stage M] [--steps1 N --steps2 N] [--k1 N --k2 N] [key=value ...]
#
# stage 0  prepare           reads $librispeech/<split>/<spk>/<chap>/*.flac + *.trans.txt
#                            writes $exp/data/{train,valid}.tsv (+ .wrd .ltr .spk; train = $train_splits merged)
# stage 1  MFCC              writes $exp/feats/mfcc/{train,valid}     (39-dim, 100 Hz)
# stage 2  k-means on MFCC   writes $exp/km/mfcc, labels $exp/it1/data/{train,valid}.km (k1 units, 100 Hz)
# stage 3  iteration 1       HuBERT (recipes/hubert/$size.yaml) on it1 labels → $exp/it1/exp/checkpoint
# stage 4  layer features    writes $exp/feats/it1_L$layer/{train,valid} (layer 6 of Base; 1 of tiny)
# stage 5  k-means on layer  writes $exp/km/it1, labels $exp/it2/data/{train,valid}.km (k2 units, 50 Hz)
# stage 6  iteration 2       HuBERT on it2 labels → $exp/it2/exp/checkpoint
#
# The label rate (100 Hz, then 50 Hz) and the number of classes travel with the labels (their .json
# sidecar), so both iterations use the same recipe. key=value words go to the trainer unchanged
# (e.g. data.num_accumulate=4 optim.lr=2e-4). Empty --steps1/--steps2 keep the recipe's max_steps
# (Base: fairseq's 250k for iteration 1, 400k for iteration 2). Multi-GPU: --launcher
# "torchrun --nproc_per_node=8 -m" (the trainer reads rank and world size from the environment).
# Every stage writes $exp/.done.stageN; reruns skip finished stages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../utils/lib.sh"
root=$(cd "$here/../../.." && pwd)

librispeech=     # the LibriSpeech directory (holding train-clean-100/, dev-clean/, ...)
exp=exp/librispeech_hubert
size=base        # recipes/hubert/<size>.yaml: tiny (CPU) | base | large
config=          # a recipe YAML of your own (overrides --size)
stage=0
stop_stage=6
train_splits="train-clean-100 train-clean-360 train-other-500"
valid_split=dev-clean
nj=16            # processes for preparation and MFCC
k1=100           # clusters on MFCC (iteration-1 targets)
k2=500           # clusters on layer features (iteration-2 targets)
layer=           # hidden layer clustered for iteration 2 (empty: 6, or 1 for tiny)
percent=0.1      # share of the frames used to fit k-means
steps1=          # steps of iteration 1 (empty: 250000 for base, else the recipe's max_steps)
steps2=          # steps of iteration 2 (empty: the recipe's max_steps)
launcher="python -m"
parse_options "$@"
[ -n "$config" ] || config=$root/recipes/hubert/$size.yaml
[ -f "$config" ] || die "--size $size / --config $config: recipe not found (recipes/hubert/{tiny,base,large}.yaml)"
[ -n "$layer" ] || { if [ "$size" = tiny ]; then layer=1; else layer=6; fi; }
[ -n "$steps1" ] || [ "$size" != base ] || steps1=250000
model=$(sed -n 's/^ *family: *\([a-z_]*\).*/\1/p' "$config" | head -n 1)  # for the log lines (egs/librispeech/wavlm reuses this script)
model=${model:-hubert}

if run_stage 0 "prepare LibriSpeech manifests ($train_splits + $valid_split)"; then
  [ -n "$librispeech" ] || die "--librispeech /path/to/LibriSpeech is required"
  audiossl prepare librispeech "$librispeech" "$exp/data/raw" --workers "$nj" --splits $train_splits "$valid_split"
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

pretrain() {  # $1 = iteration dir, $2 = steps (empty: the recipe's); rate and classes come from the labels
  $launcher audiossl.cli.main pretrain --config "$config" --manifest-dir "$exp/$1/data" \
    --train-split train --valid-split valid --labels km --out "$exp/$1/exp" ${2:+--max-steps "$2"} \
    ${overrides[@]+"${overrides[@]}"}
}

if run_stage 3 "$model ($size) iteration 1 on MFCC k-means labels"; then pretrain it1 "$steps1"; stage_done 3; fi

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

if run_stage 6 "$model ($size) iteration 2 on layer-$layer k-means labels"; then pretrain it2 "$steps2"; stage_done 6; fi
log "finished stages $stage..$stop_stage in $exp"

#!/usr/bin/env bash
# WavLM-tiny on the demo corpus from existing iteration-1 k-means labels (e.g. egs/demo/hubert's), CPU-sized:
# HuBERT-tiny's recipe + gated relative position bias + utterance mixing (recipes/wavlm/tiny.yaml).
#
#   egs/demo/wavlm/run.sh --corpus DIR --labels DIR [--exp DIR] [--stage N] [--stop_stage M] [--steps N]
#       e.g. --corpus exp/demo_hubert/corpus --labels exp/demo_hubert/it1/data
#
# stage 0  data              $corpus/speech/{train,valid}.tsv + $labels/{train,valid}.km(.json) → $exp/data
# stage 1  WavLM-tiny        $steps steps on those labels (rate and classes from the .json sidecar)
#                            writes $exp/exp, $exp/exp/checkpoint
# stage 2  layer features    layer $layer of WavLM-tiny (generic upstream path)   writes $exp/feats/L$layer/{train,valid}
# stage 3  label quality     k-means (k) on those features, PNMI against the phone alignments
#                            ($corpus/speech/train.ali)   writes $exp/km, $exp/units/train.km, $exp/quality.json
#
# Every stage writes $exp/.done.stageN when it finishes; a rerun skips finished stages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../utils/lib.sh"
root=$(cd "$here/../../.." && pwd)

exp=exp/demo_wavlm
corpus=          # demo corpus (audiossl synth) holding speech/{train,valid}.tsv and speech/train.ali
labels=          # directory with iteration-1 labels {train,valid}.km + .km.json (egs/demo/hubert: $exp/it1/data)
stage=0
stop_stage=3
seed=0
steps=800        # WavLM-tiny steps (as HuBERT-tiny's iteration 1 in egs/demo/hubert)
layer=1          # hidden layer of WavLM-tiny to cluster
k=100            # clusters on the layer features (egs/demo/hubert: k2=100)
percent=1.0      # fraction of frames per utterance used to fit k-means
parse_options "$@"
[ -n "$corpus" ] && [ -n "$labels" ] || die "--corpus DIR and --labels DIR are required (see --help)"
mkdir -p "$exp"

if run_stage 0 "manifests of $corpus/speech + labels of $labels"; then
  for split in train valid; do
    for f in "$corpus/speech/$split.tsv" "$labels/$split.km" "$labels/$split.km.json"; do
      [ -f "$f" ] || die "$f not found (--corpus: a demo corpus; --labels: k-means labels as egs/demo/hubert stage 2 writes)"
    done
  done
  mkdir -p "$exp/data"
  for split in train valid; do
    cp "$corpus/speech/$split.tsv" "$exp/data/$split.tsv"
    cp "$labels/$split.km" "$labels/$split.km.json" "$exp/data/"
  done
  [ ! -f "$labels/dict.km.txt" ] || cp "$labels/dict.km.txt" "$exp/data/"
  stage_done 0
fi

if run_stage 1 "WavLM-tiny ($steps steps on the iteration-1 labels)"; then
  audiossl pretrain --config "$root/recipes/wavlm/tiny.yaml" --manifest-dir "$exp/data" \
    --train-split train --valid-split valid --labels km --out "$exp/exp" --max-steps "$steps" \
    ${overrides[@]+"${overrides[@]}"}
  stage_done 1
fi

if run_stage 2 "layer-$layer features of WavLM-tiny"; then
  for split in train valid; do
    audiossl features model "$exp/data/$split.tsv" "$exp/feats/L$layer/$split" --ckpt "$exp/exp/checkpoint" --layer "$layer" --workers 1
  done
  stage_done 2
fi

if run_stage 3 "k-means (k=$k) on layer $layer, PNMI against the phone alignments"; then
  audiossl kmeans fit "$exp/feats/L$layer/train" "$exp/km" --k "$k" --percent "$percent" --seed "$seed"
  mkdir -p "$exp/units"
  audiossl kmeans label "$exp/km" "$exp/feats/L$layer/train" "$exp/units/train.km" --manifest "$exp/data/train.tsv"
  audiossl kmeans quality "$exp/units/train.km" --ref "$corpus/speech/train.ali" --ref-rate 100 --json "$exp/quality.json"
  stage_done 3
fi

log "finished stages $stage..$stop_stage in $exp"

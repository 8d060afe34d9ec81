#!/usr/bin/env bash
# WavLM on LibriSpeech: the HuBERT recipe's stages (egs/librispeech/hubert/run.sh) with a WavLM model,
# i.e. gated relative position bias + utterance mixing (recipes/wavlm/$size.yaml), for a user with
# LibriSpeech on disk.
#
#   egs/librispeech/wavlm/run.sh --librispeech /data/LibriSpeech [--size tiny|base|base_plus|large | --config YAML]
#       [--exp DIR] [--stage N] [--stop_stage M] [--steps1 N --steps2 N] [--k1 N --k2 N] [key=value ...]
#
# stage 0  prepare           writes $exp/data/{train,valid}.tsv (+ .wrd .ltr .spk)
# stage 1  MFCC              writes $exp/feats/mfcc/{train,valid}     (39-dim, 100 Hz)
# stage 2  k-means on MFCC   writes $exp/km/mfcc, labels $exp/it1/data/{train,valid}.km (k1 units, 100 Hz)
# stage 3  iteration 1       WavLM (recipes/wavlm/$size.yaml) on it1 labels → $exp/it1/exp/checkpoint
# stage 4  layer features    writes $exp/feats/it1_L$layer/{train,valid} (layer 6 of Base; 1 of tiny),
#                            through the generic upstream path (`audiossl features model --ckpt`)
# stage 5  k-means on layer  writes $exp/km/it1, labels $exp/it2/data/{train,valid}.km (k2 units, 50 Hz)
# stage 6  iteration 2       WavLM on it2 labels → $exp/it2/exp/checkpoint
#
# Every other option (--train_splits, --valid_split, --nj, --layer, --percent, --launcher ...) and the
# key=value trainer overrides are egs/librispeech/hubert/run.sh's, passed through unchanged; see its
# --help. Both iterations train WavLM here (the paper's WavLM Base learns units of HuBERT Base's layer 9).
# Every stage writes $exp/.done.stageN; reruns skip finished stages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../utils/lib.sh"
root=$(cd "$here/../../.." && pwd)

size=base        # recipes/wavlm/<size>.yaml: tiny (CPU) | base | base_plus | large
config=          # a recipe YAML of your own (overrides --size)
exp=exp/librispeech_wavlm
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) usage_and_exit ;;
    --size|--config|--exp) [ $# -ge 2 ] || die "option $1 needs a value"; printf -v "${1#--}" '%s' "$2"; shift 2 ;;
    --size=*|--config=*|--exp=*) key=${1%%=*}; printf -v "${key#--}" '%s' "${1#*=}"; shift ;;
    *) rest+=("$1"); shift ;;
  esac
done
[ -n "$config" ] || config=$root/recipes/wavlm/$size.yaml
[ -f "$config" ] || die "--size $size / --config $config: recipe not found (recipes/wavlm/{tiny,base,base_plus,large}.yaml)"
exec bash "$here/../hubert/run.sh" --size "$size" --config "$config" --exp "$exp" ${rest[@]+"${rest[@]}"}

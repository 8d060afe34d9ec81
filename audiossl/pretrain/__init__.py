"""Self-supervised pretraining on fairseq2's Trainer.

* :mod:`audiossl.pretrain.config`: the run config dataclass (recipe YAML + ``key=value`` overrides).
* :mod:`audiossl.pretrain.data`: manifest + frame labels → cropped, label-aligned,
  duration-bucketed batches; the resumable fairseq2 data reader.
* :mod:`audiossl.data.label_checks`: refusals before step 1 (label rate / count / classes).
* :mod:`audiossl.pretrain.unit`: the train/eval units of every family and their metrics.
* :mod:`audiossl.pretrain.trainer`: gangs, DDP/FSDP, optimizer, scheduler, checkpoints, recorders.
* :mod:`audiossl.pretrain.export`: run → audiossl checkpoint directory.

Submodules import torch and fairseq2; import them explicitly.
"""

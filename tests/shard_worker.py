"""One torchrun rank of the sharded HuBERT iteration test: features → kmeans fit → kmeans label
through the CLI (rank / world from the environment). argv: MANIFEST WORKDIR KMEANS_ARGS..."""

import sys

from audiossl.cli.main import main

tsv, work, *km = sys.argv[1:]
for argv in (
    ["features", "mfcc", tsv, f"{work}/feats", "--workers", "1", "--no-progress"],
    ["kmeans", "fit", f"{work}/feats", f"{work}/km", *km],
    ["kmeans", "label", f"{work}/km", f"{work}/feats", f"{work}/train.km"],
):
    rc = main(argv)
    if rc:
        sys.exit(rc)

"""Feature dumps: a feature kind computed over a manifest into a sharded FeatureStore.

The per-waveform functions (MFCC, fbank, CQT) live in :mod:`audiossl.audio.features`.
"""

from audiossl.features.dump import DumpSummary, Skipped, dump_features

__all__ = ["DumpSummary", "Skipped", "dump_features"]

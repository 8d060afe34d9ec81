"""The SUPERB/MARBLE-style bench: task specs, feature cache, featurizer, heads, metrics, reports.

The upstream API it evaluates lives in :mod:`audiossl.upstream`."""

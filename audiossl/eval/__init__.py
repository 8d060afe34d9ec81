"""Evaluation: the upstream API (:func:`load_upstream`), baselines, and the SUPERB-style bench."""

from audiossl.eval.upstream import Upstream, UpstreamOutput, load_upstream

__all__ = ["Upstream", "UpstreamOutput", "load_upstream"]

"""audiossl: self-supervised learning for speech, general audio and music."""

__version__ = "0.1.0"

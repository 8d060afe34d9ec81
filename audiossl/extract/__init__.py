"""Feature extraction engine behind ``audiossl extract`` (see :mod:`audiossl.extract.run`)."""

from audiossl.extract.run import ExtractConfig, ExtractReport, extract

__all__ = ["ExtractConfig", "ExtractReport", "extract"]

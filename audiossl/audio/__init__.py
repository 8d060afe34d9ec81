"""Audio in: reading (soundfile), mono mixdown, resampling, validation."""

from audiossl.audio.io import AudioError, AudioInfo, audio_info, load_audio, resample, to_mono

__all__ = ["AudioError", "AudioInfo", "audio_info", "load_audio", "resample", "to_mono"]

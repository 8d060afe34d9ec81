"""The embedded demo corpus: speech (eSpeak NG) and music (General MIDI SoundFont), made offline.

``synthesize(out, size, seed, workers, tasks)`` writes the whole corpus (see
:mod:`audiossl.data.synth.corpus` for the layout) and returns a summary dict. The same
(size, seed) gives bit-identical files on every run and with any number of workers.
"""

from audiossl.data.synth.corpus import SIZES, TASKS, SizeConfig, synthesize

__all__ = ["SIZES", "TASKS", "SizeConfig", "synthesize"]

"""In-process eSpeak NG text-to-speech through ctypes, with phoneme timing.

The library and its voice data come from the ``espeakng-loader`` wheel, so nothing is needed
from the system. eSpeak NG keeps global state and is not re-entrant: synthesise one utterance
at a time per process (a class-wide lock enforces it) and parallelise over processes.

Declarations mirror ``espeak-ng/speak_lib.h`` (API revision 12).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

# espeak_AUDIO_OUTPUT
AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_Initialize options
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_DONT_EXIT = 0x8000
# espeak_EVENT_TYPE
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_SENTENCE = 2
EVENT_END = 5
EVENT_MSG_TERMINATED = 6
EVENT_PHONEME = 7
# espeak_PARAMETER
PARAM_RATE = 1
PARAM_VOLUME = 2
PARAM_PITCH = 3
PARAM_RANGE = 4
PARAM_WORDGAP = 7
# espeak_POSITION_TYPE / synth flags
POS_CHARACTER = 1
CHARS_UTF8 = 1
ENDPAUSE = 0x1000
EE_OK = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class ESpeakError(RuntimeError):
    pass


@dataclass(frozen=True)
class VoiceSettings:
    """One speaking style: an eSpeak voice name (``en-us+f2``) and prosody parameters.

    rate: words per minute (80-450); pitch: base pitch 0-100; range: pitch range 0-100
    (0 = monotone); wordgap: extra pause between words in units of 10 ms; volume: 0-200
    (100 = eSpeak's default; some voices clip at 100, so the default leaves headroom).
    """

    voice: str
    rate: int = 175
    pitch: int = 50
    range: int = 50
    wordgap: int = 0
    volume: int = 50


@dataclass
class Synthesis:
    """Raw eSpeak output: int16 ``[time]`` at ``sample_rate`` (22,050 Hz) and phoneme onsets.

    ``phonemes`` is a list of ``(mnemonic, onset_sample)`` in order; a phoneme lasts until the
    next onset (the last one until the end of the audio). ``words`` is ``(char_pos, onset)``.
    """

    samples: np.ndarray
    sample_rate: int
    phonemes: list[tuple[str, int]]
    words: list[tuple[int, int]]


class ESpeak:
    """The eSpeak NG engine, loaded afresh for every utterance.

    eSpeak keeps state between utterances in C statics (pitch phase, flutter, random seeds) that
    ``espeak_Terminate`` does not reset, so the same text would come out a few samples different
    depending on what was spoken before. Unloading and reloading the shared library (about 8 ms)
    gives every utterance a clean engine: the output then depends only on (text, settings, seed),
    whatever process or order it runs in.

    >>> out = ESpeak().synthesize("hello world", VoiceSettings("en-us+f2"), seed=3)
    """

    _lock = threading.Lock()

    def __init__(self) -> None:
        import espeakng_loader  # lazy: only speech synthesis needs it

        self.library_path = espeakng_loader.get_library_path()
        self.data_path = espeakng_loader.get_data_path()
        self._chunks: list[np.ndarray] = []
        self._phonemes: list[tuple[str, int]] = []
        self._words: list[tuple[int, int]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds only the pointer

    def _load(self) -> tuple[ctypes.CDLL, int]:
        lib = ctypes.CDLL(self.library_path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Terminate.restype = ctypes.c_int
        rate = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), INITIALIZE_PHONEME_EVENTS | INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            self._unload(lib)
            raise ESpeakError(f"espeak_Initialize failed (data path {self.data_path})")
        return lib, int(rate)

    @staticmethod
    def _unload(lib: ctypes.CDLL) -> None:
        import _ctypes  # lazy: CPython internals, only to unload the espeak library

        _ctypes.dlclose(lib._handle)

    def _on_audio(self, wav, numsamples, events) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            ev = events[i]
            # `sample` counts from the start of the utterance at the engine's rate.
            if ev.type == EVENT_PHONEME:
                self._phonemes.append((ev.id.string.decode("ascii", "replace"), int(ev.sample)))
            elif ev.type == EVENT_WORD:
                self._words.append((int(ev.text_position), int(ev.sample)))
            i += 1
        return 0

    @staticmethod
    def _set_voice(lib: ctypes.CDLL, settings: VoiceSettings) -> None:
        if lib.espeak_SetVoiceByName(settings.voice.encode()) != EE_OK:
            raise ESpeakError(
                f"eSpeak voice {settings.voice!r} not found; use '<language>+<variant>' such as "
                f"'en-us+f2' (languages and variants are in the espeak-ng-data directory)."
            )
        for param, value in (
            (PARAM_RATE, settings.rate),
            (PARAM_PITCH, settings.pitch),
            (PARAM_RANGE, settings.range),
            (PARAM_WORDGAP, settings.wordgap),
            (PARAM_VOLUME, settings.volume),
        ):
            if lib.espeak_SetParameter(param, int(value), 0) != EE_OK:
                raise ESpeakError(f"espeak_SetParameter({param}, {value}) failed")

    def synthesize(self, text: str, settings: VoiceSettings, seed: int = 0) -> Synthesis:
        """Speak ``text`` (plain UTF-8, no SSML) with ``settings``; blocking, one at a time."""
        with self._lock:
            lib, rate = self._load()
            try:
                lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
                lib.espeak_SetSynthCallback(self._callback)
                self._set_voice(lib, settings)
                self._chunks, self._phonemes, self._words = [], [], []
                buf = ctypes.create_string_buffer(text.encode("utf-8"))
                err = lib.espeak_Synth(buf, len(buf), 0, POS_CHARACTER, 0, CHARS_UTF8 | ENDPAUSE, None, None)
                if err != EE_OK:
                    raise ESpeakError(f"espeak_Synth failed with code {err} for text {text!r}")
                lib.espeak_Synchronize()
                lib.espeak_Terminate()
            finally:
                self._unload(lib)
            samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            return Synthesis(samples.astype(np.int16), rate, self._phonemes, self._words)

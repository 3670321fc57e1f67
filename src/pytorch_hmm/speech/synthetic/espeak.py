"""The ``espeak`` engine: libespeak-ng through ctypes, phoneme events as phone starts."""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Optional

import numpy as np

from ...errors import HMMValueError
from .synthesis import SILENCE, Synthesis, _check_text, _is_korean, _tile

_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_AUDIO_OUTPUT_SYNCHRONOUS, _POS_CHARACTER, _CHARS_UTF8 = 2, 1, 1
_INIT_PHONEME_EVENTS, _INIT_DONT_EXIT = 0x0001, 0x8000
ESPEAK_VOICES = {"en": "en-us", "ko": "ko"}  # default voice per language


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h (40 bytes on 64-bit: the pointer and union start at 24, 32)."""

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


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Espeak:
    """The initialised library (one per process: it has global state; calls hold ``_ESPEAK_LOCK``)."""

    def __init__(self, lib: ctypes.CDLL, data_path: Optional[str]) -> None:
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        path = None if data_path is None else data_path.encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, path, _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT)
        if rate <= 0:
            raise OSError(f"espeak_Initialize failed (data path {data_path!r})")
        self.lib, self.sample_rate = lib, int(rate)
        lib.espeak_Info.restype = ctypes.c_char_p
        self.version = (lib.espeak_Info(None) or b"").decode()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, bytes]] = []
        self._callback = _SynthCallback(self._collect)  # kept alive as long as the library
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, num_samples: int, events) -> int:
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                self._events.append((events[i].sample, events[i].id.string))
            i += 1
        return 0

    def synthesize(self, text: str, voice: str) -> tuple[np.ndarray, list[tuple[int, bytes]]]:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise HMMValueError(f"voice must be an espeak-ng voice name such as 'en-us' or 'ko'; got {voice!r}")
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if status != 0:
            raise HMMValueError(f"espeak-ng failed (status {status}) on {text[:40]!r}")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, self._events


_ESPEAK: Optional[_Espeak] = None
_ESPEAK_LOCK = threading.Lock()


def _espeak_libraries() -> list[tuple[str, Optional[str]]]:
    """(library, data path) candidates: the ``espeakng_loader`` wheel first, then the system's."""
    found = []
    try:
        import espeakng_loader

        found.append((espeakng_loader.get_library_path(), espeakng_loader.get_data_path()))
    except (ImportError, OSError, AttributeError):
        pass
    system = ctypes.util.find_library("espeak-ng")
    if system:
        found.append((system, None))
    return found


def _espeak() -> _Espeak:
    """The process's espeak-ng, loaded and initialised on first use (call with the lock held)."""
    global _ESPEAK
    if _ESPEAK is None:
        errors = []
        for library, data in _espeak_libraries():
            try:
                _ESPEAK = _Espeak(ctypes.CDLL(library), data)
                break
            except (OSError, AttributeError) as err:
                errors.append(f"{library}: {err}")
        else:
            raise HMMValueError(
                "engine 'espeak' needs libespeak-ng (pip install espeakng-loader, or apt-get install "
                f"espeak-ng); not found{': ' + '; '.join(errors) if errors else ''}"
            )
    return _ESPEAK


def espeak_available() -> bool:
    """True when libespeak-ng can be loaded and initialised."""
    with _ESPEAK_LOCK:
        try:
            _espeak()
        except HMMValueError:
            return False
    return True


def _espeak_phone(raw: bytes) -> str:
    name = raw.decode("utf-8", errors="replace").lstrip("',%=")
    return SILENCE if not name or name.startswith("_") else name


def synthesize_espeak(text: str, voice: Optional[str] = None) -> Synthesis:
    """Text -> espeak-ng audio (22.05 kHz) and phone intervals (``voice``: ``"en-us"``, or ``"ko"``
    for Korean text when ``None``)."""
    text = _check_text(text)
    voice = voice or ESPEAK_VOICES["ko" if _is_korean(text) else "en"]
    with _ESPEAK_LOCK:
        engine = _espeak()
        samples, events = engine.synthesize(text, voice)
        rate = engine.sample_rate
    if len(samples) == 0 or not events:
        raise HMMValueError(f"espeak-ng gave no audio or no phoneme events for {text[:40]!r}")
    audio = (samples.astype(np.float32) / 32768.0).astype(np.float32)
    # a phone lasts from its event's sample to the next event's; silence before the first one
    phones = [SILENCE] + [_espeak_phone(name) for _, name in events]
    ends = [sample for sample, _ in events] + [len(audio)]
    return Synthesis(audio, rate, _tile(phones, ends, len(audio), rate))

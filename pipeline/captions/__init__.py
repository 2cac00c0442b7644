"""Captions: guideline profiles, segmentation, timing, WebVTT/SRT/TTML writers, import, lint."""

from .cues import Cue, to_srt, to_ttml, to_vtt
from .profiles import DEFAULT_PROFILE, PROFILES, Profile, get_profile
from .timing import estimate, import_timed

__all__ = ["Cue", "to_srt", "to_ttml", "to_vtt", "DEFAULT_PROFILE", "PROFILES", "Profile", "get_profile",
           "estimate", "import_timed"]

"""The captions format: ``captions/<slug>.vtt``, ``.srt`` and ``.ttml`` (IMSC 1.1 Text) per topic.

Text is the topic's full transcript when one exists, else its body. Timing comes from an
imported timed caption file (``ctx.timed_captions``) when the build found one, else it is
estimated from the speaking rate and spread to the video's duration when that is known.
Every cue is checked against the profile (the same checks as ``carepress captions lint``);
a cue that cannot meet it is reported as a warning (CP313).
"""

from __future__ import annotations

import json

from ..captions.cues import Cue, to_srt, to_ttml, to_vtt
from ..captions.lint import lint_cues
from ..captions.profiles import Profile, get_profile
from ..captions.timing import estimate, import_timed
from ..diagnostics import warning
from ..model import Collection, ListBlock, Paragraph, Topic
from . import BuildContext


def spoken_text(topic: Topic) -> str:
    """What is said in the video: the transcript, else the body (list items as their own lines)."""
    if topic.transcript and topic.transcript.strip():
        return topic.transcript
    parts: list[str] = []
    for block in topic.body:
        if isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, ListBlock):
            parts.extend(block.items)
    return "\n\n".join(parts)


def profile_for(ctx: BuildContext) -> Profile:
    return get_profile(str(ctx.options.get("profile") or ctx.config.captions.profile))


def topic_cues(topic: Topic, ctx: BuildContext, profile: Profile) -> list[Cue]:
    if topic.slug in ctx.timed_captions:
        path, raw = ctx.timed_captions[topic.slug]
        return import_timed(raw, path, profile)  # CarepressError (CP310/CP311) on bad input
    return estimate(spoken_text(topic), profile, ctx.config.captions.words_per_minute,
                    topic.media.duration_seconds)


def render(collection: Collection, ctx: BuildContext) -> dict[str, bytes]:
    profile = profile_for(ctx)
    slugs = {t.slug for t in collection.topics}
    for slug, (path, _raw) in sorted(ctx.timed_captions.items()):
        if slug not in slugs:
            ctx.diagnostics.append(warning("CP312", f"timed captions for unknown topic '{slug}': not used", path))
    out: dict[str, bytes] = {}
    for topic in collection.topics:
        base = f"captions/{topic.slug}"
        vtt, srt, ttml, problems = _topic_files(collection, topic, ctx, profile)
        for problem in problems:
            ctx.diagnostics.append(warning("CP313", problem, f"{base}.vtt"))
        out[f"{base}.vtt"], out[f"{base}.srt"], out[f"{base}.ttml"] = vtt, srt, ttml
    return out


def _topic_files(collection: Collection, topic: Topic, ctx: BuildContext,
                 profile: Profile) -> tuple[bytes, bytes, bytes, list[str]]:
    """One topic's VTT, SRT and TTML and its lint messages: from the part cache, or made."""
    key = None
    if ctx.parts is not None:
        timed = ctx.timed_captions.get(topic.slug)
        key = ctx.parts.key("captions", repr(profile), spoken_text(topic), str(ctx.config.captions.words_per_minute),
                            str(topic.media.duration_seconds), timed[0] if timed else "", timed[1] if timed else b"",
                            collection.language, topic.title)
        cached = ctx.parts.get(key)
        if cached is not None:
            data = json.loads(cached)
            return (data["vtt"].encode(), data["srt"].encode(), data["ttml"].encode(), data["problems"])
    cues = topic_cues(topic, ctx, profile)
    problems = [f"cue {v.cue} breaks {profile.title}: {v.code}: {v.message}" for v in lint_cues(cues, profile)]
    files = to_vtt(cues), to_srt(cues), to_ttml(cues, collection.language, topic.title)
    if key is not None:
        ctx.parts.put(key, json.dumps({"vtt": files[0].decode(), "srt": files[1].decode(), "ttml": files[2].decode(),
                                       "problems": problems}, ensure_ascii=False).encode())
    return (*files, problems)

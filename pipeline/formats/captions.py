"""The captions format: ``captions/<slug>.vtt``, ``.srt`` and ``.ttml`` (IMSC 1.1 Text) per topic.

Text is the topic's full transcript when one exists, else its body. Timing comes from an
imported timed caption file (``ctx.timed_captions``) when the build found one, else it is
estimated from the speaking rate and spread to the video's duration when that is known.
Every cue is checked against the profile (the same checks as ``carepress captions lint``);
a cue that cannot meet it is reported as a warning (CP313).
"""

from __future__ import annotations

import json
from typing import NamedTuple

from ..captions.cues import Cue, to_srt, to_ttml, to_vtt
from ..captions.lint import lint_cues
from ..captions.profiles import Profile, get_profile
from ..captions.timing import estimate, import_timed
from ..diagnostics import warning
from ..model import Collection, ListBlock, Paragraph, Topic
from . import BuildContext, fork_pool


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
    return estimated_cues(topic, profile, ctx.config.captions.words_per_minute)


def estimated_cues(topic: Topic, profile: Profile, wpm: float) -> list[Cue]:
    """Cues for the topic's spoken text, timed from its reading speed (and video length, if known)."""
    return estimate(spoken_text(topic), profile, wpm, topic.media.duration_seconds)


class _Started(NamedTuple):
    profile: Profile
    keys: dict[str, str]  # part-cache key of each topic's captions
    made: dict[str, tuple[bytes, bytes, bytes, list[str]]]  # from the cache
    pending: list[Topic]  # estimated timing, not cached
    chunks: list  # (topics, future) made by worker processes


def start(collection: Collection, ctx: BuildContext) -> _Started:
    """Read what is cached; with many topics to caption, hand them to the worker processes."""
    profile = profile_for(ctx)
    wpm = ctx.config.captions.words_per_minute
    keys: dict[str, str] = {}
    made: dict[str, tuple[bytes, bytes, bytes, list[str]]] = {}
    for topic in collection.topics:
        if ctx.parts is not None:
            timed = ctx.timed_captions.get(topic.slug)
            keys[topic.slug] = ctx.parts.key(
                "captions", repr(profile), spoken_text(topic), str(wpm), str(topic.media.duration_seconds),
                timed[0] if timed else "", timed[1] if timed else b"", collection.language, topic.title)
            cached = ctx.parts.get(keys[topic.slug])
            if cached is not None:
                data = json.loads(cached)
                made[topic.slug] = (data["vtt"].encode(), data["srt"].encode(), data["ttml"].encode(),
                                    data["problems"])
    # imported timing can fail with a diagnostic: done in render; estimated timing is pure: spread
    pending = [t for t in collection.topics if t.slug not in made and t.slug not in ctx.timed_captions]
    chunks = []
    jobs = max(1, int(ctx.options.get("jobs") or 1))
    if jobs > 1 and len(pending) >= PARALLEL_FROM:
        size = -(-len(pending) // (jobs * 4))
        pool = ctx.workers.pool if ctx.workers is not None else fork_pool(jobs)
        chunks = [(pending[i:i + size], pool.submit(_estimated, pending[i:i + size], profile, wpm,
                                                    collection.language)) for i in range(0, len(pending), size)]
        if ctx.workers is None:
            pool.shutdown(wait=False)  # its work goes on; the pool ends when that is done
        pending = []
    return _Started(profile, keys, made, pending, chunks)


def render(collection: Collection, ctx: BuildContext) -> dict[str, bytes]:
    begun = ctx.started.get("captions") or start(collection, ctx)
    profile, made = begun.profile, dict(begun.made)
    cached_slugs = set(made)
    slugs = {t.slug for t in collection.topics}
    for slug, (path, _raw) in sorted(ctx.timed_captions.items()):
        if slug not in slugs:
            ctx.diagnostics.append(warning("CP312", f"timed captions for unknown topic '{slug}': not used", path))
    for topic in collection.topics:
        if topic.slug not in made and topic.slug in ctx.timed_captions:
            made[topic.slug] = _files(topic_cues(topic, ctx, profile), profile, collection.language, topic.title)
    made.update(zip((t.slug for t in begun.pending),
                    _estimated(begun.pending, profile, ctx.config.captions.words_per_minute, collection.language)))
    for chunk, future in begun.chunks:
        made.update(zip((t.slug for t in chunk), future.result()))
    out: dict[str, bytes] = {}
    for topic in collection.topics:
        base = f"captions/{topic.slug}"
        vtt, srt, ttml, problems = made[topic.slug]
        if ctx.parts is not None and topic.slug not in cached_slugs:
            ctx.parts.put(begun.keys[topic.slug], json.dumps(
                {"vtt": vtt.decode(), "srt": srt.decode(), "ttml": ttml.decode(), "problems": problems},
                ensure_ascii=False).encode())
        for problem in problems:
            ctx.diagnostics.append(warning("CP313", problem, f"{base}.vtt"))
        out[f"{base}.vtt"], out[f"{base}.srt"], out[f"{base}.ttml"] = vtt, srt, ttml
    return out


PARALLEL_FROM = 200  # topics to caption before processes pay for themselves


def _files(cues: list[Cue], profile: Profile, language: str, title: str) -> tuple[bytes, bytes, bytes, list[str]]:
    """VTT, SRT, TTML and the lint messages for one topic's cues."""
    problems = [f"cue {v.cue} breaks {profile.title}: {v.code}: {v.message}" for v in lint_cues(cues, profile)]
    return to_vtt(cues), to_srt(cues), to_ttml(cues, language, title), problems


def _estimated(topics: list[Topic], profile: Profile, wpm: float, language: str):
    """Files for topics whose timing is estimated (runs in a worker process when there are many)."""
    return [_files(estimated_cues(t, profile, wpm), profile, language, t.title) for t in topics]

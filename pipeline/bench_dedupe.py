"""Dedupe benchmark: segments per second on a labelled synthetic corpus, with precision/recall."""

from __future__ import annotations

import time

from .dedupe import dedupe
from .synth import corpus, pair_scores


def run(args) -> dict:
    n = getattr(args, "segments", 100_000)
    t0 = time.perf_counter()
    data = corpus(n)
    generated = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = dedupe(data.segments)
    seconds = time.perf_counter() - t0
    predicted = [r[4] or f"dropped-{r[0]}" for r in result.rows]
    precision, recall = pair_scores(predicted, data.labels)
    figures = {
        "segments": n,
        "true_topics": data.topics,
        "topics": len(result.topics),
        "seconds": round(seconds, 3),
        "segments_per_second": round(n / seconds),
        "precision": round(precision, 5),
        "recall": round(recall, 5),
        "generate_seconds": round(generated, 3),
    }
    print(f"dedupe: {n:,} segments -> {len(result.topics):,} topics (truth {data.topics:,}) in {seconds:.2f} s "
          f"= {n / seconds:,.0f} segments/s; precision {precision:.4f}, recall {recall:.4f}")
    return figures

"""The ``content`` format: the canonical model and the dedupe report as JSON."""

from __future__ import annotations

import json

from ..model import Collection
from . import BuildContext


def dumps(data: object) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n").encode("utf-8")


def render(collection: Collection, ctx: BuildContext) -> dict[str, bytes]:
    files = {"content.json": dumps(collection.model_dump(mode="json"))}
    if ctx.report is not None:
        files["dedupe-report.json"] = ctx.report.to_json()
    return files

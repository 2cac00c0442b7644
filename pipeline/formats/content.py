"""The ``content`` format: the canonical model and the dedupe report as JSON."""

from __future__ import annotations

from ..model import Collection
from . import BuildContext


def render(collection: Collection, ctx: BuildContext) -> dict[str, bytes]:
    # pydantic's own serialiser (indented like json.dumps, non-ASCII kept): five times faster
    files = {"content.json": collection.model_dump_json(indent=2).encode("utf-8") + b"\n"}
    if ctx.report is not None:
        files["dedupe-report.json"] = ctx.report.to_json()
    return files

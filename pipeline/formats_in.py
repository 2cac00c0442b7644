"""Source file types carepress reads (kept apart from ingest so the CLI can list sources cheaply)."""

TEXT_SUFFIXES = {".txt", ".text", ""}
PANDOC_READERS = {  # suffix -> pandoc reader
    ".md": "commonmark_x",
    ".markdown": "commonmark_x",
    ".html": "html",
    ".htm": "html",
    ".docx": "docx",
}

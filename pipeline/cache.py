"""Build cache: a rebuild with nothing changed renders nothing and imports no renderer.

The key hashes everything an output depends on: source, config, transcript and caption
files, the formats and options asked for, SOURCE_DATE_EPOCH, the package's own files
(code, templates, CSS, fonts) and the versions of the libraries that render. The manifest
(``outputs/.carepress-manifest.json``) stores the key and the SHA-256 of every file written;
a build is up to date only when the key matches and every file is still there unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Iterable, Mapping

MANIFEST = ".carepress-manifest.json"
PACKAGE_DIR = Path(__file__).resolve().parent
LIBRARIES = ("pydantic", "weasyprint", "ebooklib", "jinja2", "segno", "pypandoc-binary", "rapidfuzz", "pydyf")


def _hash_files(digest, paths: Iterable[Path], root: Path | None = None) -> None:
    for path in sorted(paths):
        name = str(path.relative_to(root)) if root else str(path)
        digest.update(name.encode() + b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:  # missing or unreadable: the build itself reports it
            digest.update(b"unreadable")


def package_fingerprint() -> str:
    digest = hashlib.sha256()
    files = [p for p in PACKAGE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    _hash_files(digest, files, PACKAGE_DIR)
    for lib in LIBRARIES:
        try:
            digest.update(f"{lib}={metadata.version(lib)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{lib}=none\n".encode())
    return digest.hexdigest()


def input_key(inputs, formats: list[str], options: Mapping[str, object], strict: bool) -> str:
    digest = hashlib.sha256()
    extra: list[Path] = []
    for folder in (inputs.transcripts_dir, inputs.captions_dir):
        if folder is not None:
            extra.extend(p for p in folder.iterdir() if p.is_file())
    _hash_files(digest, list(inputs.sources) + ([inputs.config_path] if inputs.config_path else []) + extra)
    digest.update(json.dumps({
        "formats": sorted(formats), "options": {k: str(v) for k, v in sorted(options.items())}, "strict": strict,
        "epoch": os.environ.get("SOURCE_DATE_EPOCH", ""), "package": package_fingerprint(),
    }, sort_keys=True).encode())
    return digest.hexdigest()


def manifest_bytes(key: str, files: Mapping[str, bytes], diagnostics: list[dict]) -> bytes:
    body = {
        "key": key,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
        "diagnostics": diagnostics,
    }
    return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()


def up_to_date(out: Path, key: str) -> list[dict] | None:
    """The recorded diagnostics when out/ holds exactly what this key builds; else None."""
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("key") != key:
        return None
    for name, sha in manifest.get("files", {}).items():
        path = out / name
        try:
            if hashlib.sha256(path.read_bytes()).hexdigest() != sha:
                return None
        except OSError:
            return None
    return list(manifest.get("diagnostics", []))

"""PDF benchmark: ms per one-page handout, ours vs plain WeasyPrint vs the weasyprint CLI per file.

All three render the same HTML in the same run. "Plain" is what a script would do:
``HTML(string=...).write_pdf(pdf_variant="pdf/ua-1")`` with the stylesheet parsed for
every document and the default URL fetcher (fonts from file:// URLs). "Naive" runs
the ``weasyprint`` command line once per file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .formats.assets import FONT_DIR
from .formats.pdf import handout_html
from .formats.pdfrender import ASSET_BASE, PDF_TEMPLATES, TOGETHER_MAX, Document, Renderer, load_weasyprint


def _seed_topics(n: int):
    from .build import load_inputs, resolve_inputs

    _config, loaded = load_inputs(resolve_inputs(None, None))
    collection = loaded.collection
    topics = [collection.topics[i % len(collection.topics)] for i in range(n)]
    return collection, topics


def run(args) -> dict:
    load_weasyprint()
    import weasyprint

    n = min(max(getattr(args, "topics", 1000) // 20, 20), 100)
    naive_n = 8
    collection, topics = _seed_topics(n)
    htmls = [handout_html(collection, t) for t in topics]
    css_text = (PDF_TEMPLATES / "base.css").read_text(encoding="utf-8") + "@page { size: Letter; }"
    font_url = FONT_DIR.resolve().as_uri() + "/"
    plain_css = css_text.replace('url("fonts/', f'url("{font_url}')

    # before ours: a Renderer changes some of WeasyPrint's functions (pdfrender: deflate level,
    # margin boxes) for the whole process
    plain_docs = [h.replace("</head>", f"<style>{plain_css}</style></head>") for h in htmls]
    weasyprint.HTML(string=plain_docs[0]).write_pdf(pdf_variant="pdf/ua-1")
    t0 = time.perf_counter()
    for doc in plain_docs:
        weasyprint.HTML(string=doc).write_pdf(pdf_variant="pdf/ua-1")
    plain = (time.perf_counter() - t0) / n * 1000

    renderer = Renderer("letter", 1795564800)
    renderer.pdf(htmls[0], [renderer.base], "warm-up")
    t0 = time.perf_counter()
    for i, html in enumerate(htmls):
        renderer.pdf(html, [renderer.base], f"bench-{i}")
    ours = (time.perf_counter() - t0) / n * 1000
    documents = [Document(f"pdf/{t.slug}.pdf", html, ("base",)) for t, html in zip(topics, htmls)]
    t0 = time.perf_counter()
    for start in range(0, n, TOGETHER_MAX):  # as the workers do: runs of handouts laid out as one
        renderer.handouts(documents[start:start + TOGETHER_MAX])
    together = (time.perf_counter() - t0) / n * 1000

    cli = shutil.which("weasyprint", path=str(Path(sys.executable).parent)) or shutil.which("weasyprint")
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, doc in enumerate(plain_docs[:naive_n]):
            path = Path(tmp) / f"h{i}.html"
            path.write_text(doc, encoding="utf-8")
            files.append(path)
        t0 = time.perf_counter()
        for path in files:
            subprocess.run([cli, "--pdf-variant", "pdf/ua-1", str(path), str(path.with_suffix(".pdf"))],
                           check=True, capture_output=True)
        naive = (time.perf_counter() - t0) / naive_n * 1000

    figures = {
        "handouts": n,
        "ours_ms_per_handout": round(ours, 1),
        "ours_laid_out_together_ms_per_handout": round(together, 1),
        "plain_weasyprint_ms_per_handout": round(plain, 1),
        "naive_cli_ms_per_handout": round(naive, 1),
        "overhead_vs_plain_percent": round((ours / plain - 1) * 100, 1),
        "speedup_vs_naive": round(naive / ours, 1),
        "asset_base": ASSET_BASE,
    }
    print(f"pdf: {n} one-page handouts: ours {ours:.1f} ms each ({together:.1f} ms laid out {TOGETHER_MAX} together), "
          f"plain WeasyPrint {plain:.1f} ms "
          f"({figures['overhead_vs_plain_percent']:+.1f}%), weasyprint CLI per file {naive:.0f} ms "
          f"({figures['speedup_vs_naive']}x slower than ours)")
    return figures

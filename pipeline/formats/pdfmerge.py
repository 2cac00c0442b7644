"""Assemble a tagged PDF from tagged parts: the booklet from its front, topic parts and overlay.

Each part is a PDF/UA document from WeasyPrint, rendered on its own (in parallel, and cached,
so one edited topic re-renders one part). Assembly is PDF-level and fast:

- pages are appended in order; each part's structure elements become children of one
  ``Document`` element, as WeasyPrint itself builds them page by page;
- the parent tree is rebuilt with new keys (pages first, then annotations);
- ``goto:`` links of the front part become in-document destinations;
- the named destinations of every part (topic and section anchors) become the document's,
  so ``booklet.pdf#topic-…`` opens at that topic, and the outline is built from them;
- the overlay's pages (running headers, "Page N of M") are drawn over every page but the
  cover, marked as artifacts;
- identical embedded font programs are stored once.

Only functions of bytes; no file I/O.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

GOTO = "https://goto.carepress.invalid/"


@dataclass
class Part:
    """One opened part: its pages and named destinations (name -> page index, x, y)."""

    pdf: object  # pikepdf.Pdf
    pages: int
    dests: dict[str, tuple[int, float, float]]


def open_part(data: bytes) -> Part:
    import pikepdf

    pdf = pikepdf.open(io.BytesIO(data))
    index = {page.objgen: i for i, page in enumerate(pdf.pages)}
    dests: dict[str, tuple[int, float, float]] = {}
    names = pdf.Root.get("/Names")
    if names is not None and "/Dests" in names:
        tree = pikepdf.NameTree(names.Dests)
        for name, dest in tree.items():
            dests[str(name)] = (index[dest[0].objgen], float(dest[2]), float(dest[3]))
    return Part(pdf, len(pdf.pages), dests)


def _nums(pdf) -> dict[int, object]:
    tree = pdf.Root.StructTreeRoot.ParentTree
    flat = list(tree.Nums)
    return {int(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def assemble(front: Part, parts: list[Part], overlay: bytes | None,
             outline: list[tuple[str, str, list[tuple[str, str]]]], labels: dict[str, str]) -> bytes:
    """The booklet: ``front`` then ``parts``; ``outline`` is [(title, dest, [(title, dest)])]."""
    import pikepdf

    out = front.pdf
    root = out.Root
    for key in ("/Names", "/Outlines", "/PageMode"):
        if key in root:
            del root[key]
    tree_root = root.StructTreeRoot
    document = tree_root.K[0]
    # (source nums, old key) for each output page, in order; annotations are renumbered after
    owners: list[dict[int, object]] = [_nums(out)] * front.pages
    dests: dict[str, tuple[int, float, float]] = dict(front.dests)
    offset = front.pages
    for part in parts:
        src = part.pdf
        src_doc = src.Root.StructTreeRoot.K[0]
        kids = src_doc.K
        for kid in kids:
            if "/P" in kid:
                del kid["/P"]  # re-parented below; keeps the part's own tree root out of the copy
        nums = _nums(src)
        out.pages.extend(src.pages)
        # the elements and the parent tree's values copied in one pass
        copied = out.copy_foreign(src.make_indirect(pikepdf.Array([kids, *nums.values()])))
        for kid in copied[0]:
            kid.P = document
            document.K.append(kid)
        owners.extend([dict(zip(nums, copied[1:]))] * part.pages)
        for name, (page, x, y) in part.dests.items():
            dests[name] = (page + offset, x, y)
        offset += part.pages
    _rebuild_parent_tree(out, owners)
    _resolve_links(out, front.pages, dests, labels)
    _named_dests(out, dests)
    _outline(out, outline, dests)
    _dedupe_fonts(out)  # before the overlay gives each page resources of its own
    if overlay is not None:
        _overlay(out, overlay)
    buffer = io.BytesIO()
    out.save(buffer, deterministic_id=True, compress_streams=True,
             object_stream_mode=pikepdf.ObjectStreamMode.generate)
    return buffer.getvalue()


def _rebuild_parent_tree(out, owners) -> None:
    """New parent tree: page i has key i; every annotation with a structure parent follows."""
    import pikepdf

    flat = pikepdf.Array()
    annotation_entries = []
    for i, page in enumerate(out.pages):
        nums = owners[i]
        old = int(page.obj.get("/StructParents", -1))
        value = nums.get(old)
        if value is not None:
            flat.append(i)
            flat.append(value)
        page.obj.StructParents = i
        for annot in page.obj.get("/Annots", []):
            if "/StructParent" in annot:
                annotation_entries.append((annot, nums.get(int(annot.StructParent))))
    key = len(out.pages)
    for annot, value in annotation_entries:
        annot.StructParent = key
        if value is not None:
            flat.append(key)
            flat.append(value)
        key += 1
    tree = out.make_indirect(pikepdf.Dictionary(Nums=flat))
    out.Root.StructTreeRoot.ParentTree = tree
    out.Root.StructTreeRoot.ParentTreeNextKey = key


def _copy(out, value):
    """A parent-tree value (a direct array of elements, or one element) copied into ``out``."""
    import pikepdf

    if value.is_indirect:
        return out.copy_foreign(value)
    return pikepdf.Array([out.copy_foreign(item) if item.is_indirect else item for item in value])


def _resolve_links(out, front_pages: int, dests, labels: dict[str, str]) -> None:
    """The front's ``goto:`` links become destinations (only the front makes them)."""
    import pikepdf

    objs = [page.obj for page in out.pages]
    xyz = pikepdf.Name.XYZ
    for page in objs[:front_pages]:
        for annot in page.get("/Annots", ()):
            action = annot.get("/A")
            if action is None or action.get("/S") != "/URI":
                continue
            uri = str(action.URI)
            if not uri.startswith(GOTO):
                continue
            name = uri[len(GOTO):]
            target, x, y = dests[name]
            del annot["/A"]
            annot.Dest = pikepdf.Array([objs[target], xyz, x, y, 0])
            annot.Contents = pikepdf.String(f"{labels.get(name, name)}, page {target + 1}")


def _named_dests(out, dests) -> None:
    import pikepdf

    flat = pikepdf.Array()
    for name in sorted(dests, key=lambda n: n.encode("utf-8")):
        page, x, y = dests[name]
        flat.append(pikepdf.String(name))
        flat.append(pikepdf.Array([out.pages[page].obj, pikepdf.Name.XYZ, x, y, 0]))
    out.Root.Names = pikepdf.Dictionary(Dests=out.make_indirect(pikepdf.Dictionary(Names=flat)))


def _outline(out, outline, dests) -> None:
    """Bookmarks: a section per entry, its topics under it, all open; built as plain dictionaries
    (pikepdf's OutlineItem machinery costs ten times as much for a thousand entries)."""
    import pikepdf

    objs = [page.obj for page in out.pages]
    xyz = pikepdf.Name.XYZ

    def chain(parent, entries) -> int:
        items = []
        for title, dest, children in entries:
            page, x, y = dests[dest]
            item = out.make_indirect(pikepdf.Dictionary(Title=pikepdf.String(title), Parent=parent,
                                                        Dest=pikepdf.Array([objs[page], xyz, x, y, 0])))
            if items:
                item.Prev = items[-1]
                items[-1].Next = item
            items.append(item)
            if children:
                item.Count = chain(item, [(t, d, ()) for t, d in children])
        if items:
            parent.First, parent.Last = items[0], items[-1]
        return len(items) + sum(int(i.get("/Count", 0)) for i in items)

    root = out.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Outlines))
    root.Count = chain(root, outline)
    out.Root.Outlines = root
    out.Root.PageMode = pikepdf.Name.UseOutlines


def _overlay(out, overlay: bytes) -> None:
    """Draw overlay page i over page i (i >= 1), inside an artifact, after the page's own content."""
    import pikepdf

    src = pikepdf.open(io.BytesIO(overlay))
    if len(src.pages) != len(out.pages):
        raise ValueError(f"overlay has {len(src.pages)} pages, the booklet {len(out.pages)}")
    name = pikepdf.Name("/CarepressOverlay")  # a fixed name: random ones break reproducibility
    before = out.make_stream(b"q\n")  # the same two streams wrap every page's content
    after = out.make_stream(b"Q\n/Artifact BMC\nq\n" + bytes(name) + b" Do\nQ\nEMC\n")
    forms = out.copy_foreign(src.make_indirect(pikepdf.Array([p.as_form_xobject() for p in src.pages])))  # one pass
    for i, page in enumerate(out.pages):
        if i == 0:
            continue  # the cover
        obj = page.obj
        # WeasyPrint pages share one /Resources dictionary: give each page its own (shallow) copy
        shared = obj.Resources
        resources = pikepdf.Dictionary(shared)
        xobjects = pikepdf.Dictionary(shared.get("/XObject", {}))
        xobjects[name] = forms[i]
        resources.XObject = xobjects
        obj.Resources = resources
        contents = obj.Contents
        obj.Contents = pikepdf.Array([before, *contents, after] if isinstance(contents, pikepdf.Array)
                                     else [before, contents, after])


def _dedupe_fonts(out) -> None:
    """Point every font descriptor at one copy of each distinct embedded font program.

    The descriptors are found through the pages' resources (and their forms'), which the
    parts' pages share, rather than by visiting every object of a thousand-topic booklet."""
    import pikepdf

    first: dict[tuple[str, bytes], object] = {}
    seen: set[tuple[int, int]] = set()

    def resources(res) -> None:
        if res is None or (res.is_indirect and res.objgen in seen):
            return
        if res.is_indirect:
            seen.add(res.objgen)
        for font in res.get("/Font", {}).values():
            for descendant in [font, *font.get("/DescendantFonts", ())]:
                descriptor = descendant.get("/FontDescriptor")
                if descriptor is not None and descriptor.objgen not in seen:
                    seen.add(descriptor.objgen)
                    program(descriptor)
        for xobject in res.get("/XObject", {}).values():
            if xobject.get("/Subtype") == pikepdf.Name.Form and xobject.objgen not in seen:
                seen.add(xobject.objgen)
                resources(xobject.get("/Resources"))

    def program(descriptor) -> None:
        for key in ("/FontFile2", "/FontFile3", "/FontFile"):
            stream = descriptor.get(key)
            if stream is None:
                continue
            digest = (key, hashlib.sha256(stream.read_raw_bytes()).digest())
            if digest in first:
                descriptor[key] = first[digest]
            else:
                first[digest] = stream

    for page in out.pages:
        resources(page.obj.get("/Resources"))

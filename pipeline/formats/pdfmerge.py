"""Assemble a tagged PDF from tagged parts: the booklet from its front, topic parts and overlay.

Each part is a PDF/UA document from WeasyPrint, rendered on its own (in parallel, and cached,
so one edited topic re-renders one part). Assembly is PDF-level and fast:

- pages are appended in order; each part's structure elements become children of one
  ``Document`` element, as WeasyPrint itself builds them page by page;
- the parent tree is rebuilt with new keys (pages first, then annotations);
- ``goto:`` links of the front part become in-document destinations;
- the named destinations of every part (topic and section anchors) become the document's,
  so ``booklet.pdf#topic-…`` opens at that topic, and the outline is built from them;
- the contents' page numbers, rendered as "0" in tabular digits, become each entry's number
  (so the front is rendered once, whatever pages the topics move to);
- the overlay's page (running headers, "Page 2 of 3") is drawn over every page but the cover,
  marked as an artifact, with that page's numbers written into it;
- identical embedded font programs are stored once.

Only functions of bytes; no file I/O.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from typing import Iterator

GOTO = "https://goto.carepress.invalid/"


@dataclass
class Part:
    """One opened part: its pages and named destinations (name -> page index, x, y)."""

    pdf: object  # pikepdf.Pdf
    pages: int
    dests: dict[str, tuple[int, float, float]]


COMPRESSION = 3  # zlib's level for what the assembly compresses (see assemble)


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


def assemble(front: Part, parts: list[Part], overlay: bytes,
             outline: list[tuple[str, str, list[tuple[str, str]]]], labels: dict[str, str]) -> bytes:
    """The booklet: ``front`` then ``parts``; ``outline`` is [(title, dest, [(title, dest)])],
    in the order the contents list them."""
    import pikepdf

    out = front.pdf
    template = pikepdf.open(io.BytesIO(overlay))
    if len(template.pages) != 3:
        raise ValueError(f"the overlay has {len(template.pages)} pages, not 3")
    digits = _tabular_digits(template.pages[2])
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
    numbers = [dests[name][0] + 1 for _, section, topics in outline for name in (section, *(t for _, t in topics))]
    _number_contents(out, front.pages, numbers, digits)
    _rebuild_parent_tree(out, owners)
    _resolve_links(out, front.pages, dests, labels)
    _named_dests(out, dests)
    _outline(out, outline, dests)
    _dedupe_fonts(out)  # before the overlay gives each page resources of its own
    _overlay(out, template, digits)
    buffer = io.BytesIO()
    # What qpdf compresses here (the object streams, the rewritten contents and the overlay's
    # forms; the parts' own streams are copied as they are) at zlib level 3, not 6: the save
    # takes 0.13 s, not 0.2 to 0.23, on the path of every rebuild, for a booklet 5% larger (1.53
    # MB, not 1.45, for 1,000 topics). A setting of pikepdf's: only this module saves a PDF.
    # The front's XMP metadata (WeasyPrint's, as in every handout) is kept as it is: pikepdf would
    # parse it with lxml to update a PDF version it does not hold, and write it again (about 20
    # ms of the assembling child, most of it imports).
    pikepdf.settings.set_flate_compression_level(COMPRESSION)
    out.save(buffer, deterministic_id=True, compress_streams=True, fix_metadata_version=False,
             object_stream_mode=pikepdf.ObjectStreamMode.generate)
    return buffer.getvalue()


def _rebuild_parent_tree(out, owners) -> None:
    """New parent tree: page i has key i; every annotation with a structure parent follows."""
    import pikepdf

    flat: list = []  # made into one array at the end (see _named_dests)
    annotation_entries = []
    for i, page in enumerate(out.pages):
        nums = owners[i]
        obj = page.obj
        old = int(obj.get("/StructParents", -1))
        value = nums.get(old)
        if value is not None:
            flat += (i, value)
        obj.StructParents = i
        for annot in obj.get("/Annots", ()):
            if "/StructParent" in annot:
                annotation_entries.append((annot, nums.get(int(annot.StructParent))))
    key = len(out.pages)
    for annot, value in annotation_entries:
        annot.StructParent = key
        if value is not None:
            flat += (key, value)
        key += 1
    tree = out.make_indirect(pikepdf.Dictionary(Nums=pikepdf.Array(flat)))
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

    objs = [page.obj for page in out.pages]
    xyz = pikepdf.Name.XYZ
    flat: list = []  # made into one array at the end: a thousand appends to a pikepdf.Array cost more
    for name in sorted(dests, key=lambda n: n.encode("utf-8")):
        page, x, y = dests[name]
        flat.append(pikepdf.String(name))
        flat.append(pikepdf.Array([objs[page], xyz, x, y, 0]))
    out.Root.Names = pikepdf.Dictionary(Dests=out.make_indirect(pikepdf.Dictionary(Names=pikepdf.Array(flat))))


def _outline(out, outline, dests) -> None:
    """Bookmarks: a section per entry, its topics under it, all open; built as plain dictionaries
    (pikepdf's OutlineItem machinery costs ten times as much for a thousand entries)."""
    import pikepdf

    objs = [page.obj for page in out.pages]
    xyz = pikepdf.Name.XYZ

    def chain(parent, entries) -> int:
        items = []
        count = len(entries)  # the items shown, open ones' descendants included
        for title, dest, children in entries:
            page, x, y = dests[dest]
            fields = {"Title": pikepdf.String(title), "Parent": parent, "Dest": pikepdf.Array([objs[page], xyz, x, y, 0])}
            if items:
                fields["Prev"] = items[-1]
            item = out.make_indirect(pikepdf.Dictionary(**fields))
            if items:
                items[-1].Next = item
            items.append(item)
            if children:
                item.Count = shown = chain(item, [(t, d, ()) for t, d in children])
                count += shown
        if items:
            parent.First, parent.Last = items[0], items[-1]
        return count

    root = out.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Outlines))
    root.Count = chain(root, outline)
    out.Root.Outlines = root
    out.Root.PageMode = pikepdf.Name.UseOutlines


def _overlay(out, template, digits: dict[str, list[int]]) -> None:
    """Draw the overlay's page over page i (i >= 1), inside an artifact, after the page's own
    content, with "Page i+1 of N" written in: one small form per page, sharing its resources."""
    import pikepdf

    name = pikepdf.Name("/CarepressOverlay")  # a fixed name: random ones break reproducibility
    before = out.make_stream(b"q\n")  # the same two streams wrap every page's content
    after = out.make_stream(b"Q\n/Artifact BMC\nq\n" + bytes(name) + b" Do\nQ\nEMC\n")
    form = out.copy_foreign(template.make_indirect(template.pages[1].as_form_xobject()))
    faces = _faces(form.Resources, digits)
    numbered = _Numbers(form.read_bytes(), faces)
    keys = {key: form[key] for key in form.keys() if key not in ("/Length", "/Filter", "/DecodeParms")}
    if "/Resources" in keys and not keys["/Resources"].is_indirect:
        keys["/Resources"] = out.make_indirect(keys["/Resources"])  # shared, not copied into each form
    total = len(out.pages)
    for i, page in enumerate(out.pages):
        if i == 0:
            continue  # the cover
        numbers = iter([i + 1, total])
        drawn = out.make_stream(numbered.fill(numbers))
        for key, value in keys.items():
            drawn[key] = value
        if next(numbers, None) is not None:
            raise ValueError("the overlay's page does not show 'Page N of M' in tabular digits")
        obj = page.obj
        # WeasyPrint pages share one /Resources dictionary: give each page its own (shallow) copy
        shared = obj.Resources
        resources = pikepdf.Dictionary(shared)
        xobjects = pikepdf.Dictionary(shared.get("/XObject", {}))
        xobjects[name] = drawn
        resources.XObject = xobjects
        obj.Resources = resources
        contents = obj.Contents
        obj.Contents = pikepdf.Array([before, *contents, after] if isinstance(contents, pikepdf.Array)
                                     else [before, contents, after])


# A text run as WeasyPrint writes it: its position, font and size, then its glyphs (2-byte codes,
# which are glyph ids) each followed by a kerning adjustment.
_RUN = re.compile(rb"1 0 0 -1 (-?[\d.]+) (-?[\d.]+) Tm\n/([^\s/<>\[\]()]+) ([\d.]+) Tf\n\[((?:<[0-9a-fA-F]*>-?[\d.]*)*)\] TJ")
_GLYPHS = re.compile(rb"<([0-9a-fA-F]*)>(-?[\d.]*)")


@dataclass
class _Face:
    """A font of a page: the glyph ids of its tabular digits 0-9 and the advance widths of its glyphs."""

    digits: list[int]
    widths: dict[int, float]

    def __post_init__(self) -> None:
        self.digit_of = {glyph: n for n, glyph in enumerate(self.digits)}
        # a quick test that a run may show one (a match may straddle two glyphs: the run is then parsed)
        self.any_digit = re.compile(b"|".join(b"%04x" % glyph for glyph in self.digits), re.IGNORECASE)

    def advance(self, run: list[tuple[int, float]]) -> float:
        return sum(self.widths.get(glyph, 1000.0) - adjust for glyph, adjust in run)


def _font_name(font) -> str:
    return str(font.get("/BaseFont", "/"))[1:].split("+", 1)[-1]  # without the subset tag


def _tabular_digits(page) -> dict[str, list[int]]:
    """The overlay's last page shows 0123456789 in tabular digits in each face the contents
    uses: their glyph ids, by font name."""
    fonts = page.Resources.Font
    found = {}
    for match in _RUN.finditer(_content(page.obj)):
        glyphs = [glyph for glyph, _ in _items(match.group(5))]
        if len(glyphs) == 10:
            found[_font_name(fonts["/" + match.group(3).decode()])] = glyphs
    return found


def _content(obj) -> bytes:
    import pikepdf

    contents = obj.Contents
    if isinstance(contents, pikepdf.Array):
        return b"\n".join(part.read_bytes() for part in contents)
    return contents.read_bytes()


def _items(glyphs: bytes) -> list[tuple[int, float]]:
    """A TJ array's glyphs, each with the adjustment that follows it."""
    items: list[tuple[int, float]] = []
    for codes, adjust in _GLYPHS.findall(glyphs):
        ids = [int(codes[i:i + 4], 16) for i in range(0, len(codes), 4)]
        items += [(glyph, 0.0) for glyph in ids[:-1]]
        if ids:
            items.append((ids[-1], float(adjust or 0)))
    return items


def _widths(font) -> dict[int, float]:
    """A Type0 font's glyph widths (its descendant's /W array, both forms)."""
    import pikepdf

    widths: dict[int, float] = {}
    spec = list(font.DescendantFonts[0].get("/W", ()))
    i = 0
    while i + 1 < len(spec):
        first = int(spec[i])
        if isinstance(spec[i + 1], pikepdf.Array):
            for n, width in enumerate(spec[i + 1]):
                widths[first + n] = float(width)
            i += 2
        else:
            for glyph in range(first, int(spec[i + 1]) + 1):
                widths[glyph] = float(spec[i + 2])
            i += 3
    return widths


def _faces(resources, digits: dict[str, list[int]]) -> dict[bytes, _Face]:
    """The fonts of ``resources`` that have tabular digits, by resource name; each font's
    ToUnicode map is given the digits it lacks, so the numbers written in read as numbers."""
    faces: dict[bytes, _Face] = {}
    for key, font in resources.get("/Font", {}).items():
        glyphs = digits.get(_font_name(font))
        if glyphs is None or "/DescendantFonts" not in font:
            continue
        faces[key[1:].encode()] = _Face(glyphs, _widths(font))
        _map_digits(font, glyphs)
    return faces


def _map_digits(font, glyphs: list[int]) -> None:
    stream = font.get("/ToUnicode")
    if stream is None:
        return
    cmap = stream.read_bytes()
    mapped = {int(code, 16) for code in re.findall(rb"<([0-9a-fA-F]{4})> <", cmap)}
    missing = [(glyph, n) for n, glyph in enumerate(glyphs) if glyph not in mapped]
    if missing and b"endcmap" in cmap:
        block = (b"%d beginbfchar\n" % len(missing) + b"".join(b"<%04x> <%04x>\n" % (glyph, 0x30 + n)
                                                              for glyph, n in missing) + b"endbfchar\n")
        end = cmap.rindex(b"endcmap")
        stream.write(cmap[:end] + block + cmap[end:])


def _number(value: float) -> bytes:
    return b"%d" % value if value == int(value) else (b"%f" % value).rstrip(b"0")


class _Numbers:
    """A content stream's text runs of tabular digits, to be given numbers: ``fill`` replaces
    each run of digits, in order, by the next number and moves its text run so that it ends
    where it did (page numbers are right-aligned). Other runs are left as they are, unparsed."""

    def __init__(self, content: bytes, faces: dict[bytes, _Face]):
        self.pieces: list[bytes | tuple[re.Match, _Face, list[tuple[int, float]]]] = []
        last = 0
        for match in _RUN.finditer(content):
            face = faces.get(match.group(3))
            if face is None or not face.any_digit.search(match.group(5)):
                continue
            run = _items(match.group(5))
            if any(glyph in face.digit_of for glyph, _ in run):
                self.pieces += [content[last:match.start()], (match, face, run)]
                last = match.end()
        self.pieces.append(content[last:])

    def fill(self, numbers: Iterator[int]) -> bytes:
        return b"".join(piece if isinstance(piece, bytes) else _numbered(*piece, numbers) for piece in self.pieces)


def _numbered(match: re.Match, face: _Face, run: list[tuple[int, float]], numbers: Iterator[int]) -> bytes:
    new: list[tuple[int, float]] = []
    i = 0
    while i < len(run):
        if run[i][0] not in face.digit_of:
            new.append(run[i])
            i += 1
            continue
        end = i
        while end < len(run) and run[end][0] in face.digit_of:
            end += 1
        number = next(numbers, None)
        if number is None:
            raise ValueError("more page numbers shown than there are to write in")
        new += [(face.digits[int(digit)], 0.0) for digit in str(number)]
        new[-1] = (new[-1][0], run[end - 1][1])  # the adjustment after the number stays
        i = end
    x = float(match.group(1)) + (face.advance(run) - face.advance(new)) * float(match.group(4)) / 1000
    glyphs = b"".join(b"<%04x>%s" % (glyph, _number(adjust)) for glyph, adjust in new)
    return b"1 0 0 -1 %s %s Tm\n/%s %s Tf\n[%s] TJ" % (_number(round(x, 6)), match.group(2), match.group(3),
                                                       match.group(4), glyphs)


# The contents' dotted leaders. booklet.css gives each entry's content box a background of a
# colour nothing else uses (#fefefd); WeasyPrint fills it as a rectangle, cheaply, and the
# assembly draws the leader in its place: a grey dotted line along the box's foot, under the
# title's white background. In CSS pixels (WeasyPrint's page space: y down), for entries set at
# 13.5pt (base.css), as the SVG line they replace looked: dots 1.4pt long and 0.98pt high, 2.8pt
# apart, centred 0.42em + 0.7pt above the box's foot, from 1pt in to its right edge.
_LEADER_MARK = re.compile(rb"0\.996078 0\.996078 0\.992157 rg\n(-?[\d.]+) (-?[\d.]+) ([\d.]+) ([\d.]+) re\nW\nn\n"
                          rb"\1 \2 \3 \4 re\nf")
PT = 4 / 3  # CSS pixels in a point
LEADER = {"dot": 1.4 * PT, "gap": 2.8 * PT, "weight": 0.98 * PT, "raise": (0.42 * 13.5 + 0.7) * PT, "inset": 1 * PT}


def _leader(match: re.Match) -> bytes:
    x, y, width, height = (float(value) for value in match.groups())
    foot = y + height - LEADER["raise"]
    values = (LEADER["weight"], LEADER["dot"], LEADER["gap"], x + LEADER["inset"], foot, x + width, foot)
    return b"0.333333 G\n%s w\n[%s %s] 0 d\n%s %s m\n%s %s l\nS" % tuple(_number(round(v, 6)) for v in values)


def _number_contents(out, front_pages: int, numbers: list[int], digits: dict[str, list[int]]) -> None:
    """Write the contents' page numbers (rendered as tabular "0"s) into the front's pages, and
    draw their leaders (see _LEADER_MARK)."""
    left = iter(numbers)
    leaders = 0
    faces: dict[tuple[int, int], dict[bytes, _Face]] = {}  # by resources: WeasyPrint's pages share theirs
    for page in out.pages[:front_pages]:
        resources = page.obj.Resources
        if resources.objgen not in faces or resources.objgen == (0, 0):  # (0, 0): a direct dictionary
            faces[resources.objgen] = _faces(resources, digits)
        content = _content(page.obj)
        numbered = _Numbers(content, faces[resources.objgen])
        drawn, count = _LEADER_MARK.subn(_leader, numbered.fill(left) if len(numbered.pieces) > 1 else content)
        if count or len(numbered.pieces) > 1:
            page.obj.Contents = out.make_stream(drawn)
        leaders += count
    if next(left, None) is not None:
        raise ValueError(f"the contents show fewer page numbers than their {len(numbers)} entries")
    if leaders < len(numbers):
        raise ValueError(f"the contents mark {leaders} leaders for their {len(numbers)} entries")


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

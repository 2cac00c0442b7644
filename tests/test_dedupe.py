"""Dedupe decisions: title variants, near duplicates, conflicts, order; hypothesis properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.dedupe import dedupe, normalise, slugify, title_key
from pipeline.ingest import Segment
from pipeline.model import Paragraph, SourceSpan


def seg(i: int, title: str, body: str | None, line: int | None = None) -> Segment:
    line = line or (i * 4 + 1)
    blocks = (Paragraph(text=body),) if body else ()
    return Segment(i, title, blocks, SourceSpan(file="t.txt", first_line=line, last_line=line + 2))


def run(pairs: list[tuple[str, str | None]]):
    return dedupe([seg(i, t, b) for i, (t, b) in enumerate(pairs)])


BODY = "Blepharospasm is a focal dystonia characterized by repetitive, sustained contractions of the muscles around the eyes."


def test_normalise_and_keys():
    assert normalise("  Parkinson\u2019s\u00a0Disease ") == "parkinson's disease"
    assert normalise("\uff21BC") == "abc"  # NFKC folds full-width letters
    assert title_key("What is Blepharospasm?") == title_key("what is  blepharospasm")
    assert slugify("Deep Brain Stimulation for Dystonia (part 1)") == "deep-brain-stimulation-for-dystonia-part-1"
    assert slugify("Parkinson\u2019s disease") == "parkinsons-disease"
    assert slugify("../../etc/passwd") == "etc-passwd"
    assert slugify("\u4f60\u597d") == ""


def test_title_variant_most_specific_title_wins_even_when_seen_second():
    result = run([("Deep Brain Stimulation (part 1)", BODY), ("Deep Brain Stimulation for Dystonia (part 1)", BODY)])
    [topic] = result.topics
    assert topic.title == "Deep Brain Stimulation for Dystonia (part 1)"
    assert topic.aliases == ("Deep Brain Stimulation (part 1)",)
    assert [m.kind for m in result.merges] == ["title-variant"]
    assert len(topic.sources) == 2


def test_near_duplicate_typo_keeps_one_topic_and_records_score():
    typo = BODY.replace("repetitive", "repetative")
    result = run([("What is Blepharospasm?", BODY), ("What is Blepharospasm?", typo)])
    assert len(result.topics) == 1
    [merge] = result.merges
    assert merge.kind == "near-duplicate" and 0.85 <= merge.score < 1.0
    assert merge.merged_text == typo  # equal length: the first stays, the other is on record
    assert [d.code for d in result.diagnostics] == ["CP203"]


def test_near_duplicate_added_sentence_keeps_the_fuller_body():
    fuller = BODY + " This results in involuntary eye closure."
    result = run([("What is Blepharospasm?", BODY), ("What is Blepharospasm?", fuller)])
    [topic] = result.topics
    assert topic.blocks[0].text == fuller
    assert result.merges[0].merged_text == BODY
    assert result.merges[0].score >= 0.85


def test_conflict_keeps_both_with_distinct_slugs_and_warns():
    other = "Botulinum toxin injections every three months are the most common treatment for this condition."
    result = run([("What is Blepharospasm?", BODY), ("What is Blepharospasm?", other)])
    assert [t.slug for t in result.topics] == ["what-is-blepharospasm", "what-is-blepharospasm-2"]
    codes = [d.code for d in result.diagnostics]
    assert "CP202" in codes and "CP204" in codes
    [conflict] = result.conflicts
    assert conflict.topics == ("what-is-blepharospasm", "what-is-blepharospasm-2") and conflict.score < 0.85
    assert next(d for d in result.diagnostics if d.code == "CP202").severity.value == "warning"


def test_title_without_body_is_a_reported_drop():
    result = run([("Orphan Title", None), ("Real Title", BODY)])
    assert [t.title for t in result.topics] == ["Real Title"]
    [drop] = result.drops
    assert (drop.title, drop.code, drop.reason) == ("Orphan Title", "CP201", "title with no body")
    assert result.segments[0].disposition == "dropped"


def test_topic_only_in_a_later_block_is_inserted_where_that_block_puts_it():
    a, b, c, d = (("A title", "alpha body."), ("B title", "beta body."), ("C title", "gamma body."),
                  ("D title", "delta body."))
    result = run([a, b, d, a, b, c, d])
    assert [t.title for t in result.topics] == ["A title", "B title", "C title", "D title"]


def test_disagreeing_blocks_fall_back_to_first_appearance():
    a, b = ("A title", "alpha body."), ("B title", "beta body.")
    result = run([a, b, b, a])  # block 1: a<b; block 2 (b repeats... a after b): b<a
    assert [t.title for t in result.topics] == ["A title", "B title"]


# ---------------------------------------------------------------- properties

WORDS = ["neck", "eye", "spasm", "brain", "muscle", "pain", "tremor", "care", "nerve", "head"]


@st.composite
def corpora(draw):
    n = draw(st.integers(min_value=1, max_value=12))
    master = [
        (f"Topic {i} {draw(st.sampled_from(WORDS))}", f"Body {i}: " + " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=3, max_size=12))) + ".")
        for i in range(n)
    ]
    blocks = [list(range(n))]
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        keep = draw(st.lists(st.booleans(), min_size=n - 1, max_size=n - 1))
        blocks.append([0] + [i for i, k in zip(range(1, n), keep) if k])  # each block starts like the page does
    first = draw(st.permutations(range(n))) if draw(st.booleans()) else list(range(n))
    return master, blocks, first


@settings(max_examples=150, deadline=None)
@given(corpora())
def test_property_accounts_for_every_segment(corpus):
    master, blocks, _ = corpus
    pairs = [master[i] for block in blocks for i in block]
    result = run(pairs)
    assert [r.index for r in result.segments] == list(range(len(pairs)))
    creations = sum(1 for r in result.segments if r.disposition == "topic")
    assert creations + len(result.merges) + len(result.drops) == len(pairs)
    slugs = {t.slug for t in result.topics}
    assert all(r.topic in slugs for r in result.segments if r.disposition != "dropped")
    assert sum(len(t.sources) for t in result.topics) == len(pairs) - len(result.drops)


@settings(max_examples=150, deadline=None)
@given(corpora())
def test_property_order_is_consistent_with_every_block(corpus):
    master, blocks, _ = corpus
    result = run([master[i] for block in blocks for i in block])
    assert [t.title for t in result.topics] == [title for title, _ in master]


@settings(max_examples=100, deadline=None)
@given(corpora())
def test_property_keeps_first_seen_order(corpus):
    master, _, first = corpus
    pairs = [master[i] for i in first]
    result = run(pairs + pairs)
    assert [t.title for t in result.topics] == [title for title, _ in pairs]
    assert not result.diagnostics


@settings(max_examples=100, deadline=None)
@given(corpora())
def test_property_idempotent(corpus):
    master, blocks, _ = corpus
    once = run([master[i] for block in blocks for i in block])
    twice = dedupe([seg(i, t.title, t.blocks[0].text) for i, t in enumerate(once.topics)])
    assert [(t.slug, t.title, t.blocks) for t in twice.topics] == [(t.slug, t.title, t.blocks) for t in once.topics]
    assert twice.merges == [] and twice.drops == []

"""Independent English held-out text: markup stripping and the prose filter."""

from heldout_text import is_prose, package_description_corpus, prose_paragraphs

README = """# Title

Some **bold** claim with a [link](https://example.org) and `code` inside, written as a sentence.

```python
x = "a fenced block that must not be read as prose at all"

y = 2
```

    indented code block that is also not prose here at all

| a | table | row | with | cells |

Heading
=======

Another paragraph of plain prose, see https://example.org for more.
"""


def test_markup_is_stripped_and_code_tables_headings_dropped():
    paras = prose_paragraphs(README)
    assert paras == ["Some bold claim with a link and code inside, written as a sentence.",
                     "Another paragraph of plain prose, see for more."]


def test_prose_filter():
    assert is_prose("This is a plain English sentence.")
    assert not is_prose("Too short.")
    assert not is_prose("x = f(a, b) + g[0] * 2 ** 3 // 4 - 5 % 6")


def test_corpus_is_deterministic_prose_from_the_installed_requirements():
    corpus = package_description_corpus()
    assert len(corpus) > 200
    assert all(is_prose(s) for s in corpus) and len(set(corpus)) == len(corpus)
    assert package_description_corpus(("no-such-distribution-xyz",)) == ()

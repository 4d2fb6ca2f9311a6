"""English-Persian parallel text: reading pairs, cleaning them, and turning them into training data.

The paper's second stage aligns the two languages by continued pretraining on parallel text, and its instruction
data includes translation in both directions. This package does both from one list of pairs, one module per job:

* **Reading** (:func:`read_pairs`): TSV files with two columns (``--tsv_columns`` gives their order), JSONL files
  with ``en``/``fa`` fields, and gettext ``.po`` catalogues whose ``msgid`` is English and ``msgstr`` Persian
  (:func:`parse_po`, a small strict parser: ``msgctxt``, multi-line strings, C escapes, plural forms, obsolete
  ``#~`` entries; fuzzy entries and empty translations are skipped and counted). Bundled sources
  (:data:`BUNDLED_SOURCES`) are read from installed PyPI packages without importing them.
* **Cleaning** (:func:`clean_pairs`): whitespace collapsed, the Persian side normalized with
  :mod:`langadapt.normalize`, then filters in a fixed order, each pair dropped by the first one it fails, so the
  counts add up: ``empty``, ``no_persian_script``, ``too_long``, ``length_ratio``, ``duplicate``. When nothing is
  left the error names the filter that removed the last pairs.
* **Writing**: bilingual pretraining documents (:func:`pretraining_documents`) in the layouts ``en_fa`` (English
  then Persian), ``fa_en`` and ``interleaved`` (sentence by sentence) in the exact proportions asked, and
  translation instructions (:func:`translation_instructions`) in both directions with the instruction worded in
  Persian or English, in the SFT stage's ``instruction``/``input``/``output`` format.
"""

from langadapt.parallel.clean import FILTERS, FilterConfig, clean_pairs
from langadapt.parallel.documents import LAYOUTS, layout_document, pretraining_documents, split_sentences
from langadapt.parallel.files import jsonl_pairs, parse_columns, read_pairs, tsv_pairs
from langadapt.parallel.instructions import DIRECTIONS, INSTRUCTIONS, translation_instructions
from langadapt.parallel.pairs import PAIR_EXTENSIONS, Pair
from langadapt.parallel.po import PoEntry, parse_po, po_pairs
from langadapt.parallel.ratios import allocate, parse_ratios
from langadapt.parallel.report import report_markdown
from langadapt.parallel.sources import BUNDLED_SOURCES, django_pairs, persian_llm_reference_pairs
from langadapt.parallel.stage import merge_repeated_flags, write_parallel_data

__all__ = [
    "BUNDLED_SOURCES", "DIRECTIONS", "FILTERS", "INSTRUCTIONS", "LAYOUTS", "PAIR_EXTENSIONS", "FilterConfig", "Pair",
    "PoEntry", "allocate", "clean_pairs", "django_pairs", "jsonl_pairs", "layout_document",
    "merge_repeated_flags", "parse_columns", "parse_po", "parse_ratios", "persian_llm_reference_pairs", "po_pairs",
    "pretraining_documents", "read_pairs", "report_markdown", "split_sentences", "translation_instructions",
    "tsv_pairs", "write_parallel_data",
]

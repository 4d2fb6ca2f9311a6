"""Shared pieces of the tokenizer-stage tests: corpus splits, running the scripts, and checking bad input."""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

import pytest

from langadapt.cli import run_main
import _scripts  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Hafez's text spells compounds with a space, not ZWNJ, so ZWNJ round trips are checked on these sentences.
ZWNJ_FA = [
    "می‌روم", "نمی‌دانم چه می‌گویی.", "کتاب‌هایش را به کتابخانه‌ی شهر داد.", "درخت‌ها در باد می‌لرزند.",
    "بچه‌ها در حیاط بازی می‌کنند.", "این خانه‌ها قدیمی‌اند.", "شعرهای حافظ را می‌خوانیم.",
    "دانشجویان دانشگاه‌های تهران امتحان می‌دهند.", "او هر روز نامه‌ای می‌نویسد.", "گل‌های سرخ بهاری شکفتند.",
    "ما به سفر می‌رویم و برمی‌گردیم.", "آیا می‌توانی فردا بیایی؟", "زبان‌های هندواروپایی خویشاوندند.",
    "رودخانه‌ها به دریا می‌ریزند.", "دل‌ها به امید روشن است.", "پرنده‌ها کوچ می‌کنند.", "نمی‌خواستم دیر برسم.",
    "همه‌ی کارها انجام شد.", "بی‌خبر از همه جا آمد.", "ستاره‌ها در آسمان می‌درخشند.", "شب‌ها باران می‌بارد.",
    "خانواده‌ام در شیراز زندگی می‌کنند.", "این پرسش‌ها پاسخ‌های روشنی دارند.", "می‌خواهم فارسی یاد بگیرم.",
    "نوشته‌های او خواندنی‌اند.",
]
# A few strings that stress the tokenizers beyond the corpus lines: ZWNJ inside words, mixed scripts, digits of
# both kinds, Persian punctuation, inner and trailing whitespace runs, newlines, tabs.
STRESS_FA = [
    "می‌خواهم کتاب‌ها را بخوانم.",
    "آن‌ها به خانه‌ی ما آمدند؛ چرا؟",
    "سال ۱۴۰۲ و سال 2023 با هم فرق دارند.",
    "GPT-4 و Llama 2 مدل‌های زبانی‌اند، نه؟",
    "دو  فاصله   و سه فاصله",
    "سطر اول\nسطر دوم",
    "ستون\tدوم ",
] + ZWNJ_FA
STRESS_EN = [
    "The quick brown fox jumps over 13 lazy dogs.",
    "Tabs\tand  double  spaces, (parentheses) and [brackets]!",
    "naïve café déjà vu — “quotes” and ‘apostrophes’",
    "x = f(y) + 42 * z ** 2",
    "Line one\nline two",
]


def load_script(name: str):
    """Import ``tokenizer/<name>.py`` as a module (the scripts are not a package)."""
    return _scripts.load_script(f"tokenizer/{name}.py")


extract_vocab = load_script("extract_vocab")
merge = load_script("merge")


def split_corpus(lines, every: int = 10) -> tuple[list[str], list[str]]:
    """Deterministic train / held-out split: every ``every``-th line is held out."""
    train = [x for i, x in enumerate(lines) if i % every]
    held = [x for i, x in enumerate(lines) if not i % every]
    return train, held


def write_lines(path: str, lines) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def expect_usage_error(main, argv, capsys, *fragments: str) -> str:
    """Run a script's ``main`` the way the command line does; assert exit status 2 and a message holding every
    fragment; return the message."""
    with pytest.raises(SystemExit) as exc:
        run_main(main, argv)
    assert exc.value.code == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, lines  # (logging also writes to stderr)
    err = lines[0]
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def assert_nothing_written(output_dir: str) -> None:
    """Neither the output folder nor a leftover temporary sibling exists."""
    assert not os.path.exists(output_dir)
    parent, name = os.path.split(os.path.abspath(output_dir))
    assert not glob.glob(os.path.join(parent, f".{name}.*")), os.listdir(parent)

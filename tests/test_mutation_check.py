"""tests/mutation_check.py: every listed breakage of the scripts' wiring makes its targeted tests fail, and the
unmodified copy passes them. Slow: it runs those tests once per mutation in a scratch copy of the repository."""

import pytest

from _scripts import load_script

pytestmark = pytest.mark.slow


def test_every_mutation_is_caught(capsys):
    check = load_script("tests/mutation_check.py")
    assert check.main([]) == 0, capsys.readouterr().out[-6000:]
    table = capsys.readouterr().out
    assert "(unmodified)" in table and table.count(" caught ") == len(check.MUTATIONS)

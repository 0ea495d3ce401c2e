"""The mutation harness (tools/mutation.py) stays in step with the code, and kills a planted fault."""

import pytest

from tools.mutation import MUTANTS, ROOT, Mutant, main, planted


def test_every_mutant_matches_the_code_exactly_once():
    """A refactoring that moves a mutant's text must update the harness (else it would test nothing)."""
    assert len({m.id for m in MUTANTS}) == len(MUTANTS)
    for m in MUTANTS:
        text = (ROOT / m.file).read_text()
        assert planted(m, text) != text, m.id
        for test in m.tests:
            assert (ROOT / test.split("::")[0]).is_file(), (m.id, test)


def test_a_stale_mutant_is_refused():
    stale = Mutant("stale", "saformer/quant/fixed_point.py", "no such text", "x", "nothing", ())
    with pytest.raises(ValueError, match="its text occurs 0 times"):
        planted(stale, (ROOT / stale.file).read_text())


@pytest.mark.slow
def test_the_harness_kills_a_planted_fault(capsys):
    assert main(["--only", "fp-lif-gt"]) == 0  # 0: every chosen mutant killed
    line = next(x for x in capsys.readouterr().out.splitlines() if "fp-lif-gt" in x)
    assert "killed" in line and "test_fixed_point.py" in line

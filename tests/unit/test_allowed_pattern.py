"""allowedPattern: a start value is matched with a bounded check, never an unbounded backtrack."""

from __future__ import annotations

import pytest

from conveyor.model import variables


@pytest.mark.timeout(20)
def test_a_catastrophic_pattern_refuses_the_value_in_bounded_time() -> None:
    """A backtracking bomb `(a|aa)+` against 60 a's and a b is refused (timeout), not left to hang."""
    problem = variables.value_problem("V", "a" * 60 + "b", "(a|aa)+")
    assert problem is not None
    assert "took over" in problem and "simplify the pattern" in problem


def test_an_overlong_value_is_refused_without_matching() -> None:
    """A value longer than the bound never reaches the regex engine and is refused."""
    value = "1" * (variables.MAX_VALUE_CHARS + 1)
    problem = variables.value_problem("V", value, "[0-9]+")
    assert problem is not None and "does not match" in problem


def test_ordinary_values_still_match() -> None:
    """A matching value passes and a non-matching one gets the usual message."""
    assert variables.value_problem("V", "1.2.3", "[0-9.]+") is None
    problem = variables.value_problem("V", "1.0; id", "[0-9.]+")
    assert problem is not None and "does not match its allowedPattern '[0-9.]+'" in problem

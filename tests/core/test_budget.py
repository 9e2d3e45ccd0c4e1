import pytest

from sizewise.core.budget import Budget
from sizewise.core.errors import ConfigError


def test_relative_budget():
    b = Budget.parse("0.01")
    assert not b.absolute and b.allowed_drop("spearman", 82.03) == pytest.approx(0.8203)
    assert b.allows("spearman", 82.03, 81.25) and not b.allows("spearman", 82.03, 81.15)
    assert Budget.parse("1%") == b


def test_absolute_budget_in_points():
    b = Budget.parse("0.5pp")
    assert b.absolute and b.allows("accuracy", 0.9900, 0.9851) and not b.allows("accuracy", 0.99, 0.9849)


@pytest.mark.parametrize("text", ["-1", "abc", "0.5 points", "1.5"])
def test_bad_budgets(text):
    with pytest.raises(ConfigError):
        Budget.parse(text)

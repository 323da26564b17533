import pytest

from calc import lexer, parser


def test_tokenize():
    assert lexer.tokenize("12 + 3.5*(2)") == [12, "+", 3.5, "*", "(", 2, ")"]


def test_tokenize_bad_char():
    with pytest.raises(ValueError):
        lexer.tokenize("2 $ 3")


def test_precedence():
    assert parser.evaluate("2 + 3 * 4") == 14
    assert parser.evaluate("10 - 4 - 3") == 3


def test_parentheses():
    assert parser.evaluate("(2 + 3) * 4") == 20


def test_division():
    assert parser.evaluate("7 / 2") == 3.5
    with pytest.raises(ZeroDivisionError):
        parser.evaluate("1 / 0")


def test_unary_minus():
    assert parser.evaluate("-3 + 5") == 2


def test_errors():
    with pytest.raises(ValueError):
        parser.evaluate("(1 + 2")
    with pytest.raises(ValueError):
        parser.evaluate("1 2")

"""Tokenize arithmetic expressions."""

OPERATORS = "+-*/()"


def tokenize(text):
    """Split into numbers (int or float) and operator characters."""
    tokens = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in OPERATORS:
            tokens.append(ch)
            i += 1
        elif ch.isdigit() or ch == ".":
            j = i
            while j < len(text) and (text[j].isdigit() or text[j] == "."):
                j += 1
            literal = text[i:j]
            tokens.append(float(literal) if "." in literal else int(literal))
            i = j
        else:
            raise ValueError(f"unexpected character {ch!r}")
    return tokens

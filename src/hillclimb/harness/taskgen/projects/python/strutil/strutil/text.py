"""Slugs, case conversion, truncation and wrapping."""

import re


def slugify(text):
    """Lower-case words joined by '-', other characters dropped."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)


def camel_to_snake(name):
    """'parseHTTPResponse' -> 'parse_http_response'."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def snake_to_camel(name):
    """'parse_http_response' -> 'parseHttpResponse'."""
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def truncate(text, width, suffix="..."):
    """Shorten to at most `width` characters, ending with `suffix` when cut."""
    if len(text) <= width:
        return text
    if width <= len(suffix):
        return suffix[:width]
    return text[: width - len(suffix)] + suffix


def wrap(text, width):
    """Greedy word wrap into lines of at most `width` characters (long words kept whole)."""
    lines = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines

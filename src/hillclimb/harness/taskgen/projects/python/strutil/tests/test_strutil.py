from strutil import text


def test_slugify():
    assert text.slugify("Hello, World! 2024") == "hello-world-2024"


def test_camel_to_snake():
    assert text.camel_to_snake("parseHTTPResponse") == "parse_http_response"
    assert text.camel_to_snake("simple") == "simple"


def test_snake_to_camel():
    assert text.snake_to_camel("parse_http_response") == "parseHttpResponse"


def test_truncate():
    assert text.truncate("hello", 10) == "hello"
    assert text.truncate("hello world", 8) == "hello..."
    assert text.truncate("hello", 2) == ".."


def test_wrap():
    assert text.wrap("the quick brown fox", 10) == ["the quick", "brown fox"]
    assert text.wrap("", 5) == []
    assert text.wrap("abcdefgh ij", 4) == ["abcdefgh", "ij"]

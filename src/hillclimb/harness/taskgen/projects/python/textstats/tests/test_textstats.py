from textstats import core


def test_word_count():
    assert core.word_count("Hello, world! It's fine.") == 4


def test_word_count_empty():
    assert core.word_count("") == 0


def test_char_frequency():
    assert core.char_frequency("a b a") == {"a": 2, "b": 1}


def test_char_frequency_spaces():
    assert core.char_frequency("a a", ignore_spaces=False) == {"a": 2, " ": 1}


def test_longest_word():
    assert core.longest_word("a bb ccc dd") == "ccc"
    assert core.longest_word("ab cd") == "ab"
    assert core.longest_word("...") is None


def test_average_word_length():
    assert core.average_word_length("ab abcd") == 3.0
    assert core.average_word_length("") == 0.0


def test_sentence_count():
    assert core.sentence_count("One. Two! Three? four") == 4
    assert core.sentence_count("") == 0


def test_top_words():
    assert core.top_words("b a b c a b", n=2) == ["b", "a"]
    assert core.top_words("x y", n=5) == ["x", "y"]

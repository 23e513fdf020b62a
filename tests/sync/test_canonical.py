"""RFC 8785 canonical JSON (what /set stores): the shared vectors, numbers, strings, refusals."""

import json

import pytest

from engine.sync.canonical import canonical, loads_strict, number


def test_canonical_json_vectors(vectors):
    for case in vectors["canonical_json"]:
        assert canonical(case["value"]) == case["canonical"]


@pytest.mark.parametrize("value, text", [
    (0, "0"), (-0.0, "0"), (1.5, "1.5"), (1e21, "1e+21"), (1e20, "100000000000000000000"), (1e-6, "0.000001"),
    (1e-7, "1e-7"), (5e-324, "5e-324"), (2 ** 60, "1152921504606847000"), (0.1, "0.1"), (100.0, "100"),
    (-1.25e-10, "-1.25e-10"), (333333333.33333329, "333333333.3333333"),
])
def test_numbers_print_like_ecmascript(value, text):
    assert number(value) == text


def test_strings_escape_only_what_json_needs_and_keys_sort_by_utf16():
    assert canonical("a\"\\\b\f\n\r\t\x01\x1f/é\u2028😀") == '"a\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f/é\u2028😀"'
    # U+1F600 (UTF-16 D83D DE00) sorts before U+FF61 although its code point is larger: JCS compares UTF-16
    assert canonical({"😀": 1, "\uff61": 2, "a": 3}) == '{"a":3,"😀":1,"｡":2}'


def test_refusals():
    with pytest.raises(ValueError):
        loads_strict('{"a":1,"a":2}')
    with pytest.raises(ValueError):
        loads_strict("NaN")
    with pytest.raises(ValueError):
        canonical(json.loads('"\\ud800"'))

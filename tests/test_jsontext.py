"""engine/jsontext.py: strict JSON out -- NaN and infinities refused, line separators escaped, the value kept."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.jsontext import dumps, escape_separators
from engine.http.message import error_response, json_body
from engine.http.sse import named_frame

SEPARATORS = ["\u2028", "\u2029", "\x85"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, {"a": [1, math.nan]}])
def test_nan_and_infinities_are_refused(bad):
    with pytest.raises(ValueError):
        dumps(bad)
    with pytest.raises(ValueError):
        json_body(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.sampled_from(["a", "é", '"', "\\", "\n", "\x00", *SEPARATORS, "\u2027", "😀"])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12)


@given(json_values)
def test_output_is_strict_one_line_and_the_same_value(value):
    text = dumps(value)
    assert not any(s in text for s in SEPARATORS) and "\n" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == value


@given(json_values)
def test_escaping_a_valid_text_keeps_its_value(value):
    raw = json.dumps(value, ensure_ascii=False)
    assert json.loads(escape_separators(raw)) == value
    assert not any(s in escape_separators(raw) for s in SEPARATORS)


def test_every_shared_emitter_escapes():
    body = error_response(400, "bad_request", "path /pub/a\u2028b").body.decode()
    assert "\\u2028" in body and "\u2028" not in body
    frame = named_frame("end", {"reason": "x\u2029", "last": None}).decode()
    assert "\\u2029" in frame and "\u2029" not in frame

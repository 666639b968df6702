"""If-None-Match as RFC 9110 reads it: a list of tags, or any."""

from yuekang.conditional import etag_matches


def test_if_none_match_names_the_tag_in_a_list_or_with_a_star() -> None:
    assert etag_matches('"v2"', '"v2"')
    assert etag_matches('"v1", "v2"', '"v2"')
    assert etag_matches("*", '"v2"')
    assert not etag_matches('"v1"', '"v2"')
    assert not etag_matches(None, '"v2"')
    assert not etag_matches('W/"v2x"', '"v2"')

import pytest

from emporium_kit.replicas import RoundRobin, parse_urls
from emporium_kit.runtime import topic_replication


def test_one_url_is_one_replica_and_a_comma_separated_list_is_several_without_trailing_slashes():
    assert parse_urls("http://a:1/") == ("http://a:1",)
    assert parse_urls(" http://a:1, http://b:2/ ") == ("http://a:1", "http://b:2")


@pytest.mark.parametrize("value", ["", "http://a:1,", ",http://a:1", "http://a:1,,http://b:2"])
def test_an_empty_entry_in_the_list_is_refused(value):
    with pytest.raises(ValueError, match="base URLs"):
        parse_urls(value)


def test_requests_take_the_replicas_in_turn_and_wrap_around():
    replicas = RoundRobin("http://a,http://b,http://c")

    assert [replicas.url(replicas.take()) for _ in range(5)] == [
        "http://a",
        "http://b",
        "http://c",
        "http://a",
        "http://b",
    ]


def test_a_retry_goes_to_the_replica_after_the_one_that_failed_even_when_the_turn_has_moved_on():
    replicas = RoundRobin("http://a,http://b")
    first = replicas.take()  # this request starts at a
    replicas.take()  # meanwhile another request took b, so the shared turn is back at a

    assert replicas.url(first, 0) == "http://a"
    assert replicas.url(first, 1) == "http://b"


def test_a_single_url_is_every_try_of_a_request():
    replicas = RoundRobin("http://only")

    assert {replicas.url(replicas.take(), attempt) for attempt in range(3)} == {"http://only"}


@pytest.mark.parametrize(
    ("brokers", "factor", "configs"),
    [
        (1, 1, {}),
        (2, 2, {}),
        (3, 3, {"min.insync.replicas": "2"}),
        (5, 3, {"min.insync.replicas": "2"}),
    ],
)
def test_new_topics_get_three_copies_at_most_and_two_in_sync_once_there_are_three(brokers, factor, configs):
    assert topic_replication(brokers) == (factor, configs)

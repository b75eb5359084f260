"""The trie's cache of matching nodes per topic never answers with what an add or a remove changed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tidemq.mqtt.topics import topic_matches
from tidemq.routing import Route, TopicTrie
from tidemq.routing import trie as trie_mod


def _r(client: str, flt: str, qos: int = 0) -> Route:
    return Route(client_id=client, topic_filter=flt, qos=qos)


def _clients(trie: TopicTrie, topic: str) -> set[str]:
    return {r.client_id for r in trie.match(topic)}


def test_add_and_remove_after_a_cached_match() -> None:
    trie = TopicTrie()
    assert _clients(trie, "a/b") == set()  # a cached miss
    trie.add(_r("c1", "a/+"))
    assert _clients(trie, "a/b") == {"c1"}
    trie.add(_r("c2", "a/b"))  # a second node for the same topic
    assert _clients(trie, "a/b") == {"c1", "c2"}
    trie.add(_r("c1", "a/+", qos=1))  # replaced in place: same node, new route
    assert [r.qos for r in trie.match("a/b") if r.client_id == "c1"] == [1]
    trie.remove("c2", "a/b")
    assert _clients(trie, "a/b") == {"c1"}
    trie.add(_r("g1", "$share/g/a/b"))
    assert _clients(trie, "a/b") == {"c1", "g1"}
    trie.remove("g1", "$share/g/a/b")
    trie.remove("c1", "a/+")
    assert _clients(trie, "a/b") == set()
    trie.add(_r("c3", "#"))
    trie.clear()
    assert _clients(trie, "a/b") == set()


def test_cache_is_bounded() -> None:
    trie = TopicTrie([_r("c1", "t/+")])
    for i in range(trie_mod._HITS_MAX + 10):
        assert _clients(trie, f"t/{i}") == {"c1"}
    assert len(trie._hits) <= trie_mod._HITS_MAX


FILTERS = st.sampled_from(["a/b", "a/+", "+/b", "#", "a/#", "+/+", "$SYS/#", "$SYS/+", "a/b/c", "+"])
TOPICS = st.sampled_from(["a/b", "a/c", "x/b", "a", "a/b/c", "$SYS/x", "b"])
OPS = st.lists(st.tuples(st.sampled_from(["add", "remove", "match"]), st.sampled_from(["c1", "c2", "c3"]),
                         FILTERS, TOPICS), max_size=40)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_matches_agree_with_a_scan_after_any_changes(ops: list[tuple[str, str, str, str]]) -> None:
    trie = TopicTrie()
    routes: dict[tuple[str, str], Route] = {}
    for op, client, flt, topic in ops:
        if op == "add":
            trie.add(_r(client, flt))
            routes[(client, flt)] = _r(client, flt)
        elif op == "remove":
            assert trie.remove(client, flt) == (routes.pop((client, flt), None) is not None)
        else:
            assert _clients(trie, topic) == {c for (c, f) in routes if topic_matches(f, topic)}

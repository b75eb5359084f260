"""TopicTrie: spec matching tables, merge, no-local, shared groups, removal, and a model-based property test."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidemq.mqtt.topics import parse_shared, topic_matches
from tidemq.routing import Route, TenantRoutes, TopicTrie
from tidemq.routing.trie import rendezvous_order


def R(client: str, flt: str, qos: int = 0, **kw: object) -> Route:
    return Route(client_id=client, topic_filter=flt, qos=qos, **kw)  # type: ignore[arg-type]


def clients(routes: list[Route]) -> set[str]:
    return {r.client_id for r in routes}


# ---------------------------------------------------------------- spec examples through the trie

SPEC_FILTERS = [
    "sport/tennis/player1/#",
    "sport/#",
    "#",
    "sport/tennis/+",
    "sport/+",
    "+",
    "+/+",
    "/+",
    "/finance",
    "$SYS/#",
    "+/monitor/Clients",
    "$SYS/monitor/+",
    "a//b",
    "a/+/b",
]

SPEC_TOPICS = [
    "sport/tennis/player1",
    "sport/tennis/player1/ranking",
    "sport/tennis/player1/score/wimbledon",
    "sport",
    "sport/",
    "sport/tennis",
    "/finance",
    "finance",
    "$SYS",
    "$SYS/monitor/Clients",
    "a//b",
    "a/x/b",
    "/",
]


@pytest.mark.parametrize("topic", SPEC_TOPICS)
def test_spec_examples_match_like_topic_matches(topic: str) -> None:
    trie = TopicTrie(R(f, f) for f in SPEC_FILTERS)  # client id = filter: one route per client
    got = clients(trie.match(topic))
    assert got == {f for f in SPEC_FILTERS if topic_matches(f, topic)}


def test_spec_examples_explicit() -> None:
    trie = TopicTrie(R(f, f) for f in SPEC_FILTERS)
    assert clients(trie.match("sport/tennis/player1")) == {
        "sport/tennis/player1/#",
        "sport/#",
        "#",
        "sport/tennis/+",
    }
    assert clients(trie.match("sport")) == {"sport/#", "#", "+"}
    assert clients(trie.match("/finance")) == {"#", "+/+", "/+", "/finance"}
    assert clients(trie.match("$SYS/monitor/Clients")) == {"$SYS/#", "$SYS/monitor/+"}
    assert clients(trie.match("$SYS")) == {"$SYS/#"}
    assert trie.match("nothing/here/at/all/x") == [R("#", "#")]


def test_no_match_and_empty_trie() -> None:
    assert TopicTrie().match("a/b") == []
    trie = TopicTrie([R("c", "a/b")])
    assert trie.match("a") == [] and trie.match("a/b/c") == [] and trie.match("$a/b") == []


# ---------------------------------------------------------------- route bookkeeping


def test_add_replaces_same_key_and_len() -> None:
    trie = TopicTrie()
    trie.add(R("c1", "a/+", 0))
    trie.add(R("c1", "a/+", 2, subscription_id=7))
    trie.add(R("c2", "a/+", 1))
    assert len(trie) == 2
    got = {r.client_id: r for r in trie.match("a/x")}
    assert got["c1"].qos == 2 and got["c1"].subscription_ids == (7,)
    assert trie.get("c1", "a/+") == R("c1", "a/+", 2, subscription_id=7)
    assert ("c2", "a/+") in trie


def test_remove_prunes_and_reports() -> None:
    trie = TopicTrie()
    routes = [R("c1", "a/b/c"), R("c1", "a/+/c"), R("c2", "a/#"), R("c3", "$share/g/a/b/c"), R("c3", "#")]
    for r in routes:
        trie.add(r)
    assert trie.remove("c1", "nope") is False
    assert trie.remove("c9", "a/b/c") is False
    assert trie.remove("c1", "a/b/c") is True
    assert trie.remove("c1", "a/b/c") is False
    assert clients(trie.match("a/b/c")) == {"c1", "c2", "c3"}
    for r in routes[1:]:
        assert trie.remove(r.client_id, r.topic_filter)
    assert len(trie) == 0 and trie.match("a/b/c") == []
    assert trie._root.empty() and trie.shared_groups() == []


def test_subscription_ids_normalised() -> None:
    assert R("c", "a").subscription_ids == ()
    assert R("c", "a", subscription_id=3).subscription_ids == (3,)


# ---------------------------------------------------------------- no-local and overlap merge


def test_no_local_excludes_only_the_publisher() -> None:
    trie = TopicTrie([R("pub", "a/b", 1, no_local=True), R("other", "a/b", 1, no_local=True), R("x", "a/b")])
    assert clients(trie.match("a/b", publisher="pub")) == {"other", "x"}
    assert clients(trie.match("a/b", publisher="x")) == {"pub", "other", "x"}
    assert clients(trie.match("a/b")) == {"pub", "other", "x"}


def test_no_local_with_overlap_keeps_the_other_subscription() -> None:
    trie = TopicTrie([R("pub", "a/#", 1, no_local=True, subscription_id=1), R("pub", "a/b", 0, subscription_id=2)])
    [r] = trie.match("a/b", publisher="pub")
    assert r.topic_filter == "a/b" and r.subscription_ids == (2,)
    assert len(trie.match("a/b", publisher="someone")) == 1


def test_overlapping_subscriptions_merge_to_one_route() -> None:
    trie = TopicTrie(
        [
            R("c", "a/#", 0, subscription_id=1),
            R("c", "a/+", 2, subscription_id=2, worker="w1"),
            R("c", "a/b", 1, subscription_id=3, retain_as_published=True),
            R("c", "#", 1),  # no id: contributes none
            R("d", "a/b", 1, subscription_id=9),
        ]
    )
    got = {r.client_id: r for r in trie.match("a/b")}
    assert set(got) == {"c", "d"}
    c = got["c"]
    assert c.qos == 2 and c.topic_filter == "a/+" and c.worker == "w1"
    assert sorted(c.subscription_ids) == [1, 2, 3]
    assert c.retain_as_published is True
    assert got["d"] == R("d", "a/b", 1, subscription_id=9)  # unmerged: the stored route itself


def test_shared_and_non_shared_of_one_client_are_separate() -> None:
    trie = TopicTrie([R("c", "a/b", 1), R("c", "$share/g/a/b", 2), R("c", "$share/h/a/+", 0)])
    got = sorted(r.topic_filter for r in trie.match("a/b"))
    assert got == ["$share/g/a/b", "$share/h/a/+", "a/b"]


# ---------------------------------------------------------------- shared subscriptions


def test_share_round_robin_is_balanced_and_deterministic() -> None:
    trie = TopicTrie([R(c, "$share/g/s/+", 1) for c in ("m3", "m1", "m2")] + [R("solo", "s/#")])
    picks = []
    for _ in range(300):
        out = trie.match("s/x")
        shared = [r for r in out if r.topic_filter.startswith("$share/")]
        assert len(shared) == 1 and clients(out) >= {"solo"}
        picks.append(shared[0].client_id)
    assert picks[:4] == ["m1", "m2", "m3", "m1"]  # sorted member order
    assert Counter(picks) == {"m1": 100, "m2": 100, "m3": 100}


def test_share_groups_are_independent() -> None:
    trie = TopicTrie(
        [
            R("a1", "$share/A/t"),
            R("a2", "$share/A/t"),
            R("b1", "$share/B/t"),
            R("b2", "$share/B/#"),
            R("b3", "$share/B/#"),
        ]
    )
    assert sorted(trie.shared_groups()) == [("share", "A", "t"), ("share", "B", "#"), ("share", "B", "t")]
    for _ in range(10):
        out = trie.match("t")
        assert len(out) == 3  # one per matching group: (A, t), (B, t), (B, #)
        groups = Counter(parse_shared(r.topic_filter)[1:] for r in out)
        assert groups == {("A", "t"): 1, ("B", "t"): 1, ("B", "#"): 1}


def test_share_member_filter_prefers_passing_members() -> None:
    trie = TopicTrie([R(c, "$share/g/t") for c in ("m1", "m2", "m3")])
    online = {"m1", "m3"}
    picks = [trie.match("t", member_filter=lambda r: r.client_id in online)[0].client_id for _ in range(6)]
    assert picks == ["m1", "m3", "m1", "m3", "m1", "m3"]
    # nobody passes: plain round-robin still delivers to someone
    none = [trie.match("t", member_filter=lambda r: False)[0].client_id for _ in range(3)]
    assert sorted(none) == ["m1", "m2", "m3"]


def test_share_membership_change_keeps_delivering() -> None:
    trie = TopicTrie([R("m1", "$share/g/t"), R("m2", "$share/g/t")])
    trie.match("t")
    trie.remove("m1", "$share/g/t")
    assert [r.client_id for r in trie.match("t")] == ["m2"]
    trie.add(R("m0", "$share/g/t", 2))
    assert {trie.match("t")[0].client_id for _ in range(4)} == {"m0", "m2"}


def test_oshare_is_sticky_per_publisher_and_spreads() -> None:
    members = [f"m{i}" for i in range(5)]
    trie = TopicTrie([R(m, "$oshare/g/t/#", 1) for m in members])
    first: dict[str, str] = {}
    for rnd in range(3):
        for p in range(200):
            pub = f"pub{p}"
            [r] = trie.match("t/x", publisher=pub, sticky_key=pub)
            if rnd == 0:
                first[pub] = r.client_id
            assert r.client_id == first[pub]
    spread = Counter(first.values())
    assert set(spread) == set(members) and min(spread.values()) >= 20
    # deterministic across processes: the rendezvous order of the publisher's identity
    assert first["pub7"] == rendezvous_order("pub7", members)[0]
    # unrelated membership changes do not move anybody
    trie.add(R("zz", "$oshare/other/t/#"))
    trie.add(R("zz", "t/x"))
    for pub, member in first.items():
        picked = [r for r in trie.match("t/x", sticky_key=pub) if r.topic_filter == "$oshare/g/t/#"]
        assert picked[0].client_id == member


def _homes(trie: TopicTrie, pubs: list[str]) -> dict[str, str]:
    return {p: trie.match("t/x", sticky_key=p)[0].client_id for p in pubs}


def test_oshare_removing_a_member_moves_only_its_publishers() -> None:
    members = [f"member-{i}" for i in range(8)]
    pubs = [f"device/{i}" for i in range(4000)]
    trie = TopicTrie([R(m, "$oshare/g/t/#", 1) for m in members])
    before = _homes(trie, pubs)
    assert min(Counter(before.values()).values()) >= 4000 // 8 // 2  # spread over every member
    gone = "member-3"
    trie.remove(gone, "$oshare/g/t/#")
    after = _homes(trie, pubs)
    moved = {p for p in pubs if before[p] != after[p]}
    assert moved == {p for p in pubs if before[p] == gone}  # exactly the publishers of the member that left
    assert len(set(after[p] for p in moved)) >= 5  # ... spread over the others, not dumped on one
    # and a member joining takes publishers only from the others, never shuffles the rest among themselves
    trie.add(R("member-new", "$oshare/g/t/#", 1))
    joined = _homes(trie, pubs)
    assert all(joined[p] in (after[p], "member-new") for p in pubs)
    assert 0 < sum(1 for p in pubs if joined[p] == "member-new") < 4000 // 8 * 2


def test_oshare_pick_is_the_same_after_a_rebuild() -> None:
    members = [f"m{i}" for i in range(6)]
    pubs = [f"p{i}" for i in range(300)]
    one = _homes(TopicTrie([R(m, "$oshare/g/t/#") for m in members]), pubs)
    two = _homes(TopicTrie([R(m, "$oshare/g/t/#") for m in reversed(members)]), pubs)  # another worker's replica
    assert one == two


def test_oshare_member_filter_probes_to_next_member() -> None:
    members = ["a", "b", "c"]
    trie = TopicTrie([R(m, "$oshare/g/t") for m in members])
    [home] = trie.match("t", sticky_key="p")
    others = [m for m in members if m != home.client_id]
    [r] = trie.match("t", sticky_key="p", member_filter=lambda r: r.client_id != home.client_id)
    assert r.client_id in others
    [again] = trie.match("t", sticky_key="p", member_filter=lambda r: r.client_id != home.client_id)
    assert again == r  # still sticky while the filter gives the same answer
    [fallback] = trie.match("t", sticky_key="p", member_filter=lambda r: False)
    assert fallback == home


def test_shared_respects_dollar_rule() -> None:
    trie = TopicTrie([R("m", "$share/g/#"), R("n", "$share/g/+/x"), R("s", "$share/g/$SYS/#")])
    assert clients(trie.match("$SYS/x")) == {"s"}
    assert clients(trie.match("a/x")) == {"m", "n"}


# ---------------------------------------------------------------- snapshots and versions


def test_tenant_routes_replace_all_and_apply() -> None:
    tr = TenantRoutes()
    assert tr.version == -1 and len(tr) == 0
    tr.replace_all(5, [R("c1", "a/#"), R("m1", "$share/g/a"), R("m2", "$share/g/a")])
    assert tr.version == 5 and len(tr) == 3
    assert tr.match("a")[-1].client_id == "m1"
    # a new snapshot keeps the group's round-robin position
    tr.replace_all(6, [R("c1", "a/#"), R("m1", "$share/g/a"), R("m2", "$share/g/a")])
    assert tr.match("a")[-1].client_id == "m2"
    tr.replace_all(7, [R("c2", "b")])
    assert tr.version == 7 and clients(tr.match("a")) == set() and clients(tr.match("b")) == {"c2"}
    tr.apply(8, added=[R("c3", "b/#")], removed=[("c2", "b")])
    assert tr.version == 8 and clients(tr.match("b")) == {"c3"}
    tr.trie.clear()
    assert len(tr) == 0 and tr.match("b") == []


# ---------------------------------------------------------------- model-based property test

CLIENTS = st.sampled_from(["c1", "c2", "c3", "c4"])
FLEVEL = st.sampled_from(["a", "b", "", "$s", "+"])
TLEVEL = st.sampled_from(["a", "b", "", "$s", "c"])


@st.composite
def real_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(FLEVEL, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels) or "+"


@st.composite
def routes(draw: st.DrawFn) -> Route:
    flt = draw(real_filters())
    share = draw(st.sampled_from([None, None, "$share/g1/", "$share/g2/", "$oshare/g1/"]))
    sid = draw(st.one_of(st.none(), st.integers(1, 5)))
    return Route(
        client_id=draw(CLIENTS),
        topic_filter=(share or "") + flt,
        qos=draw(st.integers(0, 2)),
        no_local=False if share else draw(st.booleans()),
        subscription_id=sid,
        retain_as_published=draw(st.booleans()),
    )


@st.composite
def topic_names(draw: st.DrawFn) -> str:
    return "/".join(draw(st.lists(TLEVEL, min_size=1, max_size=5))) or "c"


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(st.tuples(st.booleans(), routes()), min_size=1, max_size=25),
    probes=st.lists(st.tuples(topic_names(), st.sampled_from(["", "c1", "c2"])), min_size=1, max_size=5),
)
def test_match_equals_reference_model(ops: list[tuple[bool, Route]], probes: list[tuple[str, str]]) -> None:
    trie = TopicTrie()
    model: dict[tuple[str, str], Route] = {}
    for remove, r in ops:
        key = (r.client_id, r.topic_filter)
        if remove:
            assert trie.remove(*key) == (key in model)
            model.pop(key, None)
        else:
            trie.add(r)
            model[key] = r
    assert len(trie) == len(model)
    for topic, publisher in probes:
        got = trie.match(topic, publisher=publisher, sticky_key=publisher)
        # non-shared: one merged route per client
        expected: dict[str, list[Route]] = {}
        groups: dict[tuple[str, str, str], set[str]] = {}
        for r in model.values():
            kind, group, real = parse_shared(r.topic_filter)
            if not topic_matches(real, topic):
                continue
            if kind is None:
                if not (r.no_local and r.client_id == publisher):
                    expected.setdefault(r.client_id, []).append(r)
            else:
                assert group is not None
                groups.setdefault((kind, group, real), set()).add(r.client_id)
        plain = [r for r in got if parse_shared(r.topic_filter)[0] is None]
        shared = [r for r in got if parse_shared(r.topic_filter)[0] is not None]
        assert sorted(r.client_id for r in plain) == sorted(expected)
        for r in plain:
            rs = expected[r.client_id]
            assert r.qos == max(x.qos for x in rs)
            assert set(r.subscription_ids) == {s for x in rs for s in x.subscription_ids}
            assert len(set(r.subscription_ids)) == len(r.subscription_ids)
            assert r.retain_as_published == any(x.retain_as_published for x in rs)
            assert r.topic_filter in {x.topic_filter for x in rs}
        picked = Counter(parse_shared(r.topic_filter) for r in shared)
        assert set(picked) == set(groups) and all(n == 1 for n in picked.values())
        for r in shared:
            assert r.client_id in groups[parse_shared(r.topic_filter)]
            assert model[(r.client_id, r.topic_filter)] == r
    for key in list(model):
        assert trie.remove(*key)
    assert trie._root.empty() and not trie.shared_groups()

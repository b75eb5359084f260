"""The subscription trie: one tenant's routes, matched against topic names without a full scan.

A ``TopicTrie`` is a tree of ``_Node`` objects keyed by topic level: literal levels in a
dict, ``+`` and ``#`` in their own slots. A route lives at the node of its (real) filter:
non-shared routes in ``node.subs`` keyed by client id (one route per client per filter),
shared routes in ``node.groups`` keyed by ``(kind, group)``. Matching a topic of L levels
visits only the branches that can match (at most 2^L in the worst all-``+`` case, a
handful in practice), never all N routes. Invariants: ``_index`` holds exactly the routes
stored in the tree, keyed ``(client_id, topic_filter)``; empty nodes are pruned on removal;
filters are assumed valid (``validate_topic_filter`` runs before a route is created).
The matching nodes of recently published topics are cached (``_hits``, bounded); every
``add``, ``remove`` and ``clear`` drops that cache, so a match never sees a stale tree.

``match`` applies MQTT 5 section 4.7/4.8: the ``$`` rule [MQTT-4.7.2-1], no-local
[MQTT-3.8.3-3], one merged route per client for overlapping non-shared subscriptions
[MQTT-3.3.4-2..5] and exactly one member per matching shared group (4.8.2):
``$share`` round-robin, ``$oshare`` sticky per publisher by rendezvous (highest-random-weight)
hashing: each member scores ``_mix(member seed ^ spread(publisher hash))`` and the highest
score wins, so removing a member moves only the publishers that were on it and adding one
moves only the publishers that now score highest on it (BifroMQ's ordered share groups).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from hashlib import blake2b
from sys import intern
from zlib import crc32

from tidemq.mqtt.topics import parse_shared

__all__ = ["MemberFilter", "Route", "TenantRoutes", "TopicTrie", "rendezvous_order", "sticky_hash"]

MemberFilter = Callable[["Route"], bool]


@dataclass(slots=True, frozen=True)
class Route:
    """One subscription of one session, as the router needs it.

    ``subscription_ids`` holds every subscription identifier the delivery must carry: a
    stored route gets ``(subscription_id,)`` (or ``()``) automatically; a route returned by
    ``TopicTrie.match`` for a client with several overlapping subscriptions is a *merged*
    route (see ``TopicTrie.match``) whose ``subscription_ids`` lists all of them and whose
    ``subscription_id`` is that of its primary route. Delivery code should read
    ``subscription_ids``, never ``subscription_id``.
    """

    client_id: str  # subscriber session key inside the tenant
    topic_filter: str  # as subscribed, including any $share/$oshare prefix
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    subscription_id: int | None = None
    worker: str = ""  # owning worker id for transient sessions ("" for persistent: they go to the inbox)
    persistent: bool = False
    subscription_ids: tuple[int, ...] = ()
    gen: str = ""  # generation of the subscriber's session the route was written for (verified on use)

    def __post_init__(self) -> None:
        if self.subscription_id is not None and not self.subscription_ids:
            object.__setattr__(self, "subscription_ids", (self.subscription_id,))


class _Group:
    """Members of one shared subscription ``(kind, group, real_filter)`` and its pick state."""

    __slots__ = ("counter", "kind", "members", "order", "picks", "seeds")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.members: dict[str, Route] = {}
        self.order: list[Route] | None = None  # members sorted by client id; None = stale
        self.seeds: list[int] = []  # $oshare: each member's rendezvous seed, in ``order``
        self.picks: dict[int, Route] = {}  # $oshare: publisher hash -> member (no filter); reset with order
        self.counter = 0  # $share round-robin position

    def _order(self) -> list[Route]:
        order = self.order
        if order is None:
            order = self.order = [self.members[c] for c in sorted(self.members)]
            self.seeds = [member_seed(r.client_id) for r in order] if self.kind != "share" else []
            self.picks = {}
        return order

    def pick(self, key_hash: int, member_filter: MemberFilter | None) -> Route:
        order = self._order()
        n = len(order)
        if self.kind != "share":
            return self._rendezvous(order, key_hash, member_filter)
        start = self.counter % n
        self.counter = start + 1
        if member_filter is None or n == 1:
            return order[start]
        for k in range(n):
            i = (start + k) % n
            r = order[i]
            if member_filter(r):
                self.counter = i + 1
                return r
        return order[start]  # nobody passes: fall back to the plain choice

    def _rendezvous(self, order: list[Route], key_hash: int, member_filter: MemberFilter | None) -> Route:
        """The highest-scoring member for ``key_hash`` (among those passing ``member_filter``, if any do)."""
        if len(order) == 1:
            return order[0]
        if member_filter is None:
            hit = self.picks.get(key_hash)
            if hit is not None:
                return hit
        spread = _spread(key_hash)
        seeds = self.seeds
        if member_filter is None:
            best = order[max(range(len(order)), key=lambda i: _mix(seeds[i] ^ spread))]
            if len(self.picks) >= _PICK_CACHE:
                self.picks.clear()
            self.picks[key_hash] = best
            return best
        ranked = sorted(range(len(order)), key=lambda i: _mix(seeds[i] ^ spread), reverse=True)
        best = order[ranked[0]]
        for i in ranked:
            if member_filter(order[i]):
                return order[i]
        return best  # nobody passes: fall back to the plain choice


class _Node:
    __slots__ = ("children", "groups", "hash", "plus", "subs")

    def __init__(self) -> None:
        self.children: dict[str, _Node] | None = None  # dicts are created on first use (memory)
        self.plus: _Node | None = None
        self.hash: _Node | None = None
        self.subs: dict[str, Route] | None = None
        self.groups: dict[tuple[str, str], _Group] | None = None

    def empty(self) -> bool:
        return not (self.children or self.plus or self.hash or self.subs or self.groups)


def _merge(routes: list[Route]) -> Route:
    """One route for a client's overlapping subscriptions [MQTT-3.3.4-2..5].

    The primary is the first route with the highest QoS (its filter, worker, options are
    kept); ``qos`` is the maximum, ``subscription_ids`` the union in match order, and
    ``retain_as_published`` is true if any of the routes asks for it.
    """
    primary = routes[0]
    ids: list[int] = []
    rap = False
    for r in routes:
        if r.qos > primary.qos:
            primary = r
        rap = rap or r.retain_as_published
        for sid in r.subscription_ids:
            if sid not in ids:
                ids.append(sid)
    return Route(
        client_id=primary.client_id,
        topic_filter=primary.topic_filter,
        qos=primary.qos,
        no_local=primary.no_local,
        retain_as_published=rap,
        retain_handling=primary.retain_handling,
        subscription_id=primary.subscription_id,
        worker=primary.worker,
        persistent=primary.persistent,
        subscription_ids=tuple(ids),
        # the newest generation: a route left by an older session of the client (stale) never hides a
        # current one (generations grow per client id: docs/redis-keys.md "Two slots")
        gen=max((r.gen for r in routes), key=lambda g: int(g or 0)),
    )


def sticky_hash(key: str) -> int:
    """The stable (cross-process) hash of a publisher's identity ``$oshare`` uses: CRC-32 of the UTF-8 bytes."""
    return crc32(key.encode("utf-8", "surrogatepass"))


_M64 = (1 << 64) - 1
_PICK_CACHE = 4096  # publishers remembered per $oshare group (the cache is dropped when members change)
_HITS_MAX = 4096  # topics whose matching nodes a trie remembers


def member_seed(client_id: str) -> int:
    """A member's stable 64-bit rendezvous seed (the same in every process)."""
    return int.from_bytes(blake2b(client_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def _spread(key_hash: int) -> int:
    return (key_hash * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _M64


def _mix(x: int) -> int:
    """The 64-bit finaliser of MurmurHash3: a member's score for one publisher."""
    x = ((x ^ (x >> 33)) * 0xFF51AFD7ED558CCD) & _M64
    x = ((x ^ (x >> 33)) * 0xC4CEB9FE1A85EC53) & _M64
    return x ^ (x >> 33)


def rendezvous_order(key: str, client_ids: Iterable[str]) -> list[str]:
    """``client_ids`` from the ``$oshare`` member a publisher ``key`` goes to down to the last resort
    (what ``TopicTrie.match`` picks, for tests and ``tidemq inspect``)."""
    spread = _spread(sticky_hash(key) if key else 0)
    return sorted(client_ids, key=lambda c: _mix(member_seed(c) ^ spread), reverse=True)


class TopicTrie:
    """The routes of one tenant, indexed by filter level. Not thread-safe (one event loop)."""

    __slots__ = ("_groups", "_hits", "_index", "_root")

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self._root = _Node()
        self._index: dict[tuple[str, str], Route] = {}
        self._groups: dict[tuple[str, str, str], _Group] = {}
        # topic -> its matching nodes: publishers repeat their topics, so most matches are one lookup. Dropped
        # by every add and remove (the nodes and what they hold change only there); bounded: cleared when full
        self._hits: dict[str, list[_Node]] = {}
        for r in routes:
            self.add(r)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def get(self, client_id: str, topic_filter: str) -> Route | None:
        return self._index.get((client_id, topic_filter))

    def routes(self) -> Iterator[Route]:
        """Every stored route (in insertion order)."""
        return iter(list(self._index.values()))

    def add(self, route: Route) -> None:
        """Store ``route``, replacing the route with the same ``(client_id, topic_filter)``."""
        self._hits.clear()
        kind, group, real = parse_shared(route.topic_filter)
        node = self._root
        for level in real.split("/"):
            if level == "+":
                nxt = node.plus
                if nxt is None:
                    nxt = node.plus = _Node()
            elif level == "#":
                nxt = node.hash
                if nxt is None:
                    nxt = node.hash = _Node()
            else:
                children = node.children
                if children is None:
                    children = node.children = {}
                nxt = children.get(level)
                if nxt is None:
                    nxt = children[intern(level)] = _Node()  # one copy of "cmd", "status", ...
            node = nxt
        if kind is None:
            if node.subs is None:
                node.subs = {}
            node.subs[route.client_id] = route
        else:
            assert group is not None
            groups = node.groups
            if groups is None:
                groups = node.groups = {}
            g = groups.get((kind, group))
            if g is None:
                g = groups[(kind, group)] = self._groups[(kind, group, real)] = _Group(kind)
            g.members[route.client_id] = route
            g.order = None
        self._index[(route.client_id, route.topic_filter)] = route

    def remove(self, client_id: str, topic_filter: str) -> bool:
        """Remove the route ``(client_id, topic_filter)``; False if there was none."""
        if self._index.pop((client_id, topic_filter), None) is None:
            return False
        self._hits.clear()
        kind, group, real = parse_shared(topic_filter)
        path: list[tuple[_Node, str]] = []
        node = self._root
        for level in real.split("/"):
            path.append((node, level))
            if level == "+":
                nxt = node.plus
            elif level == "#":
                nxt = node.hash
            else:
                nxt = node.children.get(level) if node.children is not None else None
            assert nxt is not None, "index and trie out of step"
            node = nxt
        if kind is None:
            assert node.subs is not None
            del node.subs[client_id]
            if not node.subs:
                node.subs = None
        else:
            assert node.groups is not None and group is not None
            g = node.groups[(kind, group)]
            del g.members[client_id]
            g.order = None
            if not g.members:
                del node.groups[(kind, group)]
                del self._groups[(kind, group, real)]
                if not node.groups:
                    node.groups = None
        # prune empty nodes bottom-up
        for parent, level in reversed(path):
            if not node.empty():
                break
            if level == "+":
                parent.plus = None
            elif level == "#":
                parent.hash = None
            else:
                assert parent.children is not None
                del parent.children[level]
                if not parent.children:
                    parent.children = None
            node = parent
        return True

    def clear(self) -> None:
        """Remove every route (and every shared group's round-robin state)."""
        self._root = _Node()
        self._index.clear()
        self._groups.clear()
        self._hits.clear()

    def replace_all(self, routes: Iterable[Route]) -> None:
        """Replace the content with ``routes``; ``$share`` groups that survive keep their counters."""
        counters = {k: g.counter for k, g in self._groups.items()}
        self.clear()
        for r in routes:
            self.add(r)
        for k, g in self._groups.items():
            c = counters.get(k)
            if c is not None:
                g.counter = c

    def _matching_nodes(self, topic: str) -> list[_Node]:
        """Nodes whose filter matches ``topic`` (each at most once, never an empty one); the list is shared
        (cached): never modify it."""
        hit = self._hits.get(topic)
        if hit is None:
            hit = self._walk(topic)
            if len(self._hits) >= _HITS_MAX:
                self._hits.clear()
            self._hits[topic] = hit
        return hit

    def _walk(self, topic: str) -> list[_Node]:
        levels = topic.split("/")
        root = self._root
        hit: list[_Node] = []
        if topic[:1] == "$":  # [MQTT-4.7.2-1]: no '+' or '#' first level for '$' topics
            first = root.children.get(levels[0]) if root.children is not None else None
            if first is None:
                return hit
            nodes = [first]
            levels = levels[1:]
        else:
            nodes = [root]
        for level in levels:
            nxt: list[_Node] = []
            for n in nodes:
                if n.hash is not None:
                    hit.append(n.hash)
                ch = n.children
                if ch is not None:
                    c = ch.get(level)
                    if c is not None:
                        nxt.append(c)
                if n.plus is not None:
                    nxt.append(n.plus)
            nodes = nxt
            if not nodes:
                return hit
        for n in nodes:
            if n.subs or n.groups:
                hit.append(n)
            if n.hash is not None:  # "a/#" matches "a"
                hit.append(n.hash)
        return hit

    def match(
        self,
        topic: str,
        *,
        publisher: str = "",
        sticky_key: str = "",
        member_filter: MemberFilter | None = None,
    ) -> list[Route]:
        """The routes a message published on ``topic`` by ``publisher`` must reach.

        - Non-shared routes whose filter matches, minus the publisher's own no-local routes
          [MQTT-3.8.3-3]; ONE route per client id: the stored route itself when only one
          matches, else a merged ``Route`` (max QoS, all ``subscription_ids``, see
          ``_merge``) [MQTT-3.3.4-2..5].
        - Then exactly one member route per matching shared group: ``$share`` round-robin
          (one counter per group, advanced per call), ``$oshare`` by rendezvous hashing of
          ``sticky_key`` (the publisher's identity) over the members (``rendezvous_order``).
          Members failing ``member_filter`` are skipped unless none passes. A client may thus
          appear once as a non-shared route and once per shared group it belongs to (these are
          separate subscriptions).
        """
        hit = self._matching_nodes(topic)
        if not hit:
            return []
        out: list[Route]
        if len(hit) == 1:
            node = hit[0]
            subs = node.subs
            if subs is None:
                out = []
            elif publisher and publisher in subs and subs[publisher].no_local:
                out = [r for c, r in subs.items() if c != publisher]
            else:
                out = list(subs.values())
            if node.groups:
                h = sticky_hash(sticky_key) if sticky_key else 0
                for g in node.groups.values():
                    out.append(g.pick(h, member_filter))
            return out
        seen: dict[str, Route] = {}
        overlaps: dict[str, list[Route]] = {}
        groups: list[_Group] = []
        for node in hit:
            subs = node.subs
            if subs is not None:
                for cid, r in subs.items():
                    if r.no_local and cid == publisher:
                        continue
                    prev = seen.setdefault(cid, r)
                    if prev is not r:
                        lst = overlaps.get(cid)
                        if lst is None:
                            overlaps[cid] = [prev, r]
                        else:
                            lst.append(r)
            if node.groups:
                groups.extend(node.groups.values())
        for cid, lst in overlaps.items():
            seen[cid] = _merge(lst)
        out = list(seen.values())
        if groups:
            h = sticky_hash(sticky_key) if sticky_key else 0
            for g in groups:
                out.append(g.pick(h, member_filter))
        return out

    def group_members(self, kind: str, group: str, real_filter: str) -> set[str]:
        """Client ids in one shared group (MaxSharedGroupMembers checks)."""
        g = self._groups.get((kind, group, real_filter))
        return set(g.members) if g is not None else set()

    def shared_groups(self) -> list[tuple[str, str, str]]:
        """``(kind, group, real_filter)`` of every shared group (for stats and tests)."""
        return list(self._groups)


class TenantRoutes:
    """A tenant's trie plus the route ``version`` it reflects (compared with Redis before use)."""

    __slots__ = ("trie", "version")

    def __init__(self, version: int = -1, routes: Iterable[Route] = ()) -> None:
        self.version = version
        self.trie = TopicTrie(routes)

    def __len__(self) -> int:
        return len(self.trie)

    def replace_all(self, version: int, routes: Iterable[Route]) -> None:
        """Rebuild from a full snapshot taken at ``version`` (round-robin counters survive)."""
        self.trie.replace_all(routes)
        self.version = version

    def apply(self, version: int, added: Iterable[Route] = (), removed: Iterable[tuple[str, str]] = ()) -> None:
        """Apply one incremental change that moved the tenant to ``version``.

        ``removed`` holds ``(client_id, topic_filter)`` keys; removals run before additions.
        """
        for client_id, topic_filter in removed:
            self.trie.remove(client_id, topic_filter)
        for r in added:
            self.trie.add(r)
        self.version = version

    def match(
        self,
        topic: str,
        *,
        publisher: str = "",
        sticky_key: str = "",
        member_filter: MemberFilter | None = None,
    ) -> list[Route]:
        """Shortcut for ``self.trie.match`` (the caller checks ``version`` first)."""
        return self.trie.match(topic, publisher=publisher, sticky_key=sticky_key, member_filter=member_filter)

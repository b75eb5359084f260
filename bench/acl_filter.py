"""Micro-benchmark of narrowed subscriptions (issue 15): what the per-message read check costs at delivery.

Measures, in one process with no broker (pure ``tidemq.auth`` code):

- ``ReadFilter.allows`` per message: cached (a topic seen before), uncached (``cache_size=0``), and
  ``allows_levels`` on an already split topic; with one deny pattern and with five;
- ``DeliveryFilter.allows`` for a connection with no narrowed subscription (what every other connection
  pays: should be ~ the cost of calling an empty method) and with one narrowed subscription;
- a simulated fan-out of one message to N subscribers, with none narrowed and with one narrowed, so the
  extra cost per delivery is visible next to the loop it runs in;
- ``StaticFileProvider.subscribe_grant_now`` (cached) and the grant walk itself (``Acl.grant_subscribe``).

Usage: ``python bench/acl_filter.py [--quick]`` from the repository root. Prints nanoseconds per operation
(best of 5 repeats). Nothing is started, nothing is written.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tidemq.auth import DeliveryFilter, Identity, StaticFileProvider
from tidemq.auth.acl import GRANTED, Acl, ReadFilter, narrow, parse_rules
from tidemq.auth.static import parse_auth_data


def ns_per_op(fn: Callable[[], object], n: int) -> float:
    best = min(timeit.repeat(fn, number=n, repeat=5))
    return best / n * 1e9


def topics(count: int) -> list[str]:
    """Topic names under sensors/: 1 in 10 secret."""
    return [f"sensors/secret/{i}" if i % 10 == 0 else f"sensors/site{i % 7}/dev{i}/temp" for i in range(count)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a few seconds)")
    args = ap.parse_args()
    n = 20_000 if args.quick else 200_000
    rows: list[tuple[str, float]] = []

    one = ReadFilter.denying(["sensors/secret/#"])
    five = ReadFilter.denying(["sensors/secret/#", "sensors/+/keys", "sensors/a/#", "sensors/b/+/x", "sensors/c"])
    hot = topics(200)  # a working set that fits the caches (ReadFilter 1024, DeliveryFilter 256)
    cold_one = ReadFilter.denying(["sensors/secret/#"])
    cold_one.cache_size = 0
    cold_five = ReadFilter(five.entries, cache_size=0)
    split = [t.split("/") for t in hot]
    for rf in (one, five):
        for t in hot:
            rf.allows(t)

    def cycle(fn: Callable[[str], bool]) -> Callable[[], object]:
        it = iter(range(1 << 62))
        return lambda: fn(hot[next(it) % 200])

    def cycle_levels(rf: ReadFilter) -> Callable[[], object]:
        it = iter(range(1 << 62))
        return lambda: rf.allows_levels(split[next(it) % 200])

    baseline = ns_per_op(cycle(lambda t: True), n)
    rows.append(("loop overhead (pick a topic, call a lambda)", baseline))
    rows.append(("ReadFilter.allows, 1 deny, cached", ns_per_op(cycle(one.allows), n)))
    rows.append(("ReadFilter.allows, 1 deny, uncached", ns_per_op(cycle(cold_one.allows), n)))
    rows.append(("ReadFilter.allows_levels, 1 deny (topic pre-split)", ns_per_op(cycle_levels(one), n)))
    rows.append(("ReadFilter.allows, 5 entries, cached", ns_per_op(cycle(five.allows), n)))
    rows.append(("ReadFilter.allows, 5 entries, uncached", ns_per_op(cycle(cold_five.allows), n)))

    plain = DeliveryFilter()
    plain.set("sensors/#", GRANTED)
    narrowed = DeliveryFilter()
    narrowed.set("sensors/#", narrow("sensors/#", ["sensors/secret/#"]))
    narrowed.set("alerts/#", GRANTED)
    for t in hot:
        narrowed.allows(t)
    rows.append(("DeliveryFilter.allows, no narrowed subscription", ns_per_op(cycle(plain.allows), n)))
    rows.append(("DeliveryFilter.allows, one narrowed (cached)", ns_per_op(cycle(narrowed.allows), n)))
    uncached = DeliveryFilter(cache_size=0)
    uncached.set("sensors/#", narrow("sensors/#", ["sensors/secret/#"]))
    uncached.set("alerts/#", GRANTED)
    rows.append(("DeliveryFilter.allows, one narrowed (uncached)", ns_per_op(cycle(uncached.allows), n)))

    # fan-out of one message to 1000 subscribers: the per-subscriber check is what the worker adds
    subs = 1000
    conns = [plain] * subs
    mixed = [narrowed] + [plain] * (subs - 1)
    topic = "sensors/site1/dev1/temp"

    def fan(targets: list[DeliveryFilter]) -> Callable[[], object]:
        def run() -> int:  # the worker's test: an attribute, then the check only when active
            sent = 0
            for reads in targets:
                if not reads.active or reads.allows(topic):
                    sent += 1
            return sent
        return run

    def fan_bare() -> int:
        sent = 0
        for _reads in conns:
            sent += 1
        return sent

    m = max(200, n // 200)
    rows.append((f"fan-out to {subs}: bare loop (per message)", ns_per_op(fan_bare, m)))
    rows.append((f"fan-out to {subs}: none narrowed (per message)", ns_per_op(fan(conns), m)))
    rows.append((f"fan-out to {subs}: one narrowed (per message)", ns_per_op(fan(mixed), m)))

    rules = parse_rules([{"permission": "deny", "action": "subscribe", "topics": ["sensors/secret/#"]},
                         {"permission": "allow", "action": "all", "topics": ["sensors/#"]}])
    acl = Acl(rules, "alice", "dev1")
    rows.append(("Acl.grant_subscribe sensors/# (the walk, uncached)",
                 ns_per_op(lambda: acl.grant_subscribe("sensors/#", 1), n)))
    provider = StaticFileProvider(data=parse_auth_data({"tenants": {"acme": {"acl": [
        {"permission": "deny", "action": "subscribe", "topics": ["sensors/secret/#"]},
        {"permission": "allow", "action": "all", "topics": ["sensors/#"]}]}}}))
    who = Identity("acme", "alice", "dev1")
    provider.subscribe_grant_now(who, "sensors/#", 1)
    rows.append(("StaticFileProvider.subscribe_grant_now (cached)",
                 ns_per_op(lambda: provider.subscribe_grant_now(who, "sensors/#", 1), n)))

    width = max(len(name) for name, _ in rows)
    print(f"python {sys.version.split()[0]}, {n} iterations, best of 5")
    for name, ns in rows:
        print(f"{name:<{width}}  {ns:9.1f} ns")


if __name__ == "__main__":
    main()

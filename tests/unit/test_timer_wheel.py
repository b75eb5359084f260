"""The worker's timer wheel (``workers/timers.py``): when connections come due, moved deadlines, cancel.

Pure in time: the tests pass ``now`` in; no sockets, no sleeping.
"""

from __future__ import annotations

from typing import Any

from tidemq.worker.timers import TimerWheel


class Conn:
    """Just what the wheel touches on a connection."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.timer_key: int | None = None

    def __repr__(self) -> str:
        return self.name


def _wheel() -> Any:
    return TimerWheel()


def test_due_at_the_second_of_the_deadline_not_before() -> None:
    w = _wheel()
    a, b = Conn("a"), Conn("b")
    w.schedule(a, 100.4)
    w.schedule(b, 102.9)
    assert w.due(99.9) == []
    assert w.due(100.0) == [a]  # its second has come: the caller checks the exact deadline
    assert w.due(101.5) == []
    assert w.due(102.0) == [b]
    assert len(w) == 0


def test_a_deadline_already_past_comes_due_at_the_next_call() -> None:
    w = _wheel()
    w.due(50.0)
    a = Conn("a")
    w.schedule(a, 49.0)
    assert w.due(50.5) == []  # same second as the last call: nothing new is due yet
    assert w.due(51.0) == [a]


def test_reschedule_replaces_and_cancel_forgets() -> None:
    w = _wheel()
    a, b = Conn("a"), Conn("b")
    w.schedule(a, 10.0)
    w.schedule(a, 20.0)  # the deadline moved: only the new one counts
    w.schedule(b, 10.0)
    w.cancel(b)
    assert len(w) == 1
    assert w.due(15.0) == []
    assert w.due(20.0) == [a]
    assert a.timer_key is None and b.timer_key is None


def test_a_long_stall_takes_everything_due() -> None:
    w = _wheel()
    w.due(0.0)
    conns = [Conn(str(i)) for i in range(5)]
    for i, c in enumerate(conns):
        w.schedule(c, 10.0 * (i + 1))
    assert sorted(w.due(10_000.0), key=lambda c: c.name) == conns

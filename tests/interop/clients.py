"""Thin, event-driven wrappers around real MQTT clients for the interop tests.

``Paho`` runs a paho-mqtt 2.x client (callback API v2) on its own network
thread and turns callbacks into ``threading.Event``s and ``queue.Queue``s, so a
test waits on what happened, never on time; every wait is bounded and fails
with a message. Automatic reconnection is off (a takeover must not turn into a
reconnect loop). ``MosquittoSub``/``mosquitto_pub`` drive the mosquitto
command-line clients; ``mosquitto_sub -d`` prints "received SUBACK", which is
the event a test waits for before publishing.
"""

from __future__ import annotations

import queue
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.fixtures.brokers import Broker

WAIT = 10.0
PROTOCOLS = {"v31": mqtt.MQTTv31, "v311": mqtt.MQTTv311, "v5": mqtt.MQTTv5}


def uid() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class ConnAck:
    session_present: bool
    reason: int


class Paho:
    """One paho-mqtt client; messages land in ``self.messages`` (a Queue of ``MQTTMessage``)."""

    def __init__(
        self,
        broker: Broker,
        client_id: str | None = None,
        *,
        protocol: str = "v311",
        clean: bool = True,
        session_expiry: int | None = None,
        username: str | None = None,
        password: str | None = None,
        will: tuple[str, bytes, int, bool] | None = None,
        max_inflight: int = 20,
    ) -> None:
        self.broker = broker
        self.protocol = protocol
        self.v5 = protocol == "v5"
        self.clean = clean
        self.session_expiry = session_expiry
        self.client_id = client_id if client_id is not None else f"p{uid()}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if self.v5 else clean,
            protocol=PROTOCOLS[protocol],
            reconnect_on_failure=False,
        )
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack: ConnAck | None = None
        self.disconnect_reason: int | None = None
        self._subacks: dict[int, list[int]] = {}
        self._suback_event = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe

    # -- callbacks (network thread) --------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        self.connack = ConnAck(bool(flags.session_present), int(reason_code.value))
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if not self.disconnected.is_set():  # the first reason is the broker's (a close may follow)
            self.disconnect_reason = int(reason_code.value)
            self.disconnected.set()

    def _on_message(self, client, userdata, message) -> None:  # type: ignore[no-untyped-def]
        self.messages.put(message)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # type: ignore[no-untyped-def]
        with self._suback_event:
            self._subacks[mid] = [int(rc.value) for rc in reason_codes]
            self._suback_event.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # type: ignore[no-untyped-def]
        with self._suback_event:
            self._subacks[mid] = [int(rc.value) for rc in reason_codes] if isinstance(reason_codes, list) else []
            self._suback_event.notify_all()

    # -- actions (test thread) ---------------------------------------------------------------
    def connect(self, timeout: float = WAIT, expect_success: bool = True) -> ConnAck:
        kwargs: dict[str, object] = {"keepalive": 60}
        if self.v5:
            kwargs["clean_start"] = self.clean
            if self.session_expiry is not None:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.session_expiry
                kwargs["properties"] = props
        self.connected.clear()
        self.disconnected.clear()
        self.client.connect(self.broker.host, self.broker.port, **kwargs)  # type: ignore[arg-type]
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise AssertionError(f"{self.client_id}: no CONNACK within {timeout}s")
        assert self.connack is not None
        if expect_success:
            assert self.connack.reason == 0, f"{self.client_id}: CONNACK refused {self.connack.reason:#x}"
        return self.connack

    def subscribe(self, topic: str | Sequence[tuple[str, int]], qos: int = 0, timeout: float = WAIT) -> list[int]:
        """Subscribe and wait for the SUBACK; returns its codes (granted QoS / reason codes)."""
        pairs = [(topic, qos)] if isinstance(topic, str) else list(topic)
        if self.v5:
            arg: list[tuple[str, object]] = [(t, SubscribeOptions(qos=q)) for t, q in pairs]
        else:
            arg = list(pairs)
        result, mid = self.client.subscribe(arg)  # type: ignore[arg-type]
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        with self._suback_event:
            if not self._suback_event.wait_for(lambda: mid in self._subacks, timeout):
                raise AssertionError(f"{self.client_id}: no SUBACK for {topic!r} within {timeout}s")
            return self._subacks.pop(mid)

    def unsubscribe(self, topic: str, timeout: float = WAIT) -> None:
        """Unsubscribe and wait for the UNSUBACK (after it, no message of that filter is routed here)."""
        result, mid = self.client.unsubscribe(topic)
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        with self._suback_event:
            if not self._suback_event.wait_for(lambda: mid in self._subacks, timeout):
                raise AssertionError(f"{self.client_id}: no UNSUBACK for {topic!r} within {timeout}s")
            self._subacks.pop(mid)

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                wait: bool = True, timeout: float = WAIT) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish failed: {info.rc}"
        if wait:
            info.wait_for_publish(timeout)
            assert info.is_published(), f"{self.client_id}: publish to {topic!r} not acknowledged in {timeout}s"
        return info

    def get(self, timeout: float = WAIT) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout}s") from None

    def get_many(self, n: int, timeout: float = WAIT) -> list[mqtt.MQTTMessage]:
        return [self.get(timeout) for _ in range(n)]

    def drain(self) -> list[mqtt.MQTTMessage]:
        """Messages already received (no waiting)."""
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def wait_disconnected(self, timeout: float = WAIT) -> int:
        if not self.disconnected.wait(timeout):
            raise AssertionError(f"{self.client_id}: still connected after {timeout}s")
        assert self.disconnect_reason is not None
        return self.disconnect_reason

    def disconnect(self, timeout: float = WAIT) -> None:
        """A normal DISCONNECT, then stop the network thread."""
        if self.connected.is_set() and not self.disconnected.is_set():
            self.client.disconnect()
            self.wait_disconnected(timeout)
        self.client.loop_stop()

    def drop(self, timeout: float = WAIT) -> None:
        """Close the TCP connection abruptly, without DISCONNECT (the will must fire)."""
        sock = self.client.socket()
        assert sock is not None, "not connected"
        sock.shutdown(socket.SHUT_RDWR)
        self.wait_disconnected(timeout)
        self.client.loop_stop()

    def close(self) -> None:
        """Best-effort cleanup for fixtures."""
        try:
            self.client.disconnect()
        except Exception:
            pass
        self.client.loop_stop()


def sentinel_barrier(publisher: Paho, subscriber: Paho, topic: str, qos: int = 1) -> list[mqtt.MQTTMessage]:
    """Publish a sentinel on ``topic`` and return every message the subscriber got before it.

    Publishes from one client on one topic stay in order, so when the sentinel
    arrives, anything that was going to arrive before it has arrived.
    """
    token = f"sentinel-{uid()}".encode()
    publisher.publish(topic, token, qos=qos)
    before: list[mqtt.MQTTMessage] = []
    while True:
        msg = subscriber.get()
        if msg.payload == token:
            return before
        before.append(msg)


# -- mosquitto command-line clients ---------------------------------------------------------------
def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install mosquitto-clients)")
    return path


@dataclass
class CliMessage:
    topic: str
    qos: int
    retain: bool
    payload: bytes


class MosquittoSub:
    """``mosquitto_sub -d`` in the background; ``wait_subscribed()`` then ``messages()``."""

    def __init__(self, broker: Broker, topics: Sequence[str], *, version: str = "mqttv311", qos: int = 0,
                 count: int = 1, timeout: int = 10, extra: Sequence[str] = ()) -> None:
        argv = [require_binary("mosquitto_sub"), "-h", broker.host, "-p", str(broker.port), "-V", version,
                "-q", str(qos), "-C", str(count), "-W", str(timeout), "-d", "-F", "MSG|%t|%q|%r|%x", *extra]
        for t in topics:
            argv += ["-t", t]
        stdbuf = shutil.which("stdbuf")  # stdout is a pipe: without this its lines arrive only at exit
        if stdbuf:
            argv = [stdbuf, "-oL", *argv]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def _next(self, timeout: float) -> str | None:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"mosquitto_sub: nothing within {timeout}s; output so far: {self.log}") from None
        if line is not None:
            self.log.append(line)
        return line

    def wait_subscribed(self, timeout: float = WAIT) -> None:
        while True:
            line = self._next(timeout)
            if line is None:
                raise AssertionError(f"mosquitto_sub exited before SUBACK: {self.log}")
            if "received SUBACK" in line:
                return

    def messages(self, timeout: float = WAIT + 5) -> list[CliMessage]:
        """Every message until the process exits (after ``count`` messages or its -W timeout)."""
        out: list[CliMessage] = []
        while (line := self._next(timeout)) is not None:
            if line.startswith("MSG|"):
                _, topic, qos, retain, hexpayload = line.split("|", 4)
                out.append(CliMessage(topic, int(qos), retain == "1", bytes.fromhex(hexpayload)))
        self.proc.wait(timeout)
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)


def mosquitto_pub(broker: Broker, topic: str, payload: bytes | None, *, version: str = "mqttv311",
                  qos: int = 0, retain: bool = False, extra: Sequence[str] = ()) -> None:
    """One message via ``mosquitto_pub`` (payload via stdin, so binary works; None = zero-length)."""
    argv = [require_binary("mosquitto_pub"), "-h", broker.host, "-p", str(broker.port), "-V", version,
            "-t", topic, "-q", str(qos), *extra]
    if retain:
        argv.append("-r")
    argv += ["-n"] if payload is None else ["-s"]
    done = subprocess.run(argv, input=payload or b"", capture_output=True, timeout=WAIT, check=False)
    assert done.returncode == 0, f"mosquitto_pub failed ({done.returncode}): {done.stdout!r} {done.stderr!r}"

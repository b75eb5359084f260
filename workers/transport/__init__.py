"""Extra MQTT transports for the worker: TLS, WebSocket (RFC 6455) and WebSocket over TLS.

Every transport ends in the same ``MQTTConnection`` protocol object: TLS is an
``ssl.SSLContext`` on ``loop.create_server`` (``tls``), WebSocket is an
``asyncio.Protocol`` wrapper whose inner transport turns binary frames back
into a byte stream (``websocket``: the ``websockets`` sans-IO protocol on asyncio),
and ``listeners.start_listeners`` starts whichever of them the settings turn
on. This package imports nothing from the rest of ``workers`` so the
connection module may import from it.
"""

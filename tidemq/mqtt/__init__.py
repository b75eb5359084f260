"""Sans-IO MQTT: codec, properties, topics and the per-connection state machine.

Nothing in this package performs I/O, awaits, reads the clock or imports
redis/sanic/asyncio: time is passed in by the caller.
"""

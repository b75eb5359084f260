"""The TideMQ admin HTTP API (Sanic), BifroMQ-compatible: ``app.server.create_app`` / ``start_api``.

It holds nothing but caches: every read and change goes to Redis through
``tidemq.store`` and ``tidemq.publish``; workers are reached only by signals
through Redis. It never imports ``workers``.
"""

"""In-memory routing: the per-worker replica of each tenant's subscription routes.

Sans-IO: no asyncio, no clock, no Redis. ``TopicTrie`` answers "who gets a message
published on this topic" without scanning every subscription; ``TenantRoutes`` pairs a
trie with the route version it was built from, so the worker can trust it only after
comparing that version with the one in Redis.
"""

from .trie import MemberFilter, Route, TenantRoutes, TopicTrie

__all__ = ["MemberFilter", "Route", "TenantRoutes", "TopicTrie"]

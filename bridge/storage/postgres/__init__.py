"""PostgreSQL adapter of ``bridge.storage.port.Store`` (asyncpg): several replicas may share one database.

Must not import: anything in ``bridge`` but ``bridge.model`` and ``bridge.storage.port``; aiohttp, Slack packages,
``handlers``.
"""

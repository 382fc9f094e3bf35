"""The SQLite adapter (aiosqlite): the embedded default engine. Imports only ``bridge.model`` and the port."""

"""Storage: the port every engine implements (``bridge.storage.port``), its adapters (``sqlite``, ``postgres``) and
``bridge.storage.engines``, which opens the one ``DATABASE_URL`` names. Callers import the port and the engines
module only; they never see SQL or which engine runs."""

"""The test suite (a package, so helpers import as ``tests.pg``, ``tests.faults.procs``)."""

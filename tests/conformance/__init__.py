"""ferry conformance suite (a package so its module names never clash with tests/e2e)."""

"""Pool e2e app that never boots: every spawn is a boot failure."""
raise RuntimeError("pool e2e deliberate boot failure")

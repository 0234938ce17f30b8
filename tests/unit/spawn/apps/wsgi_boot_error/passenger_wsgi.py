raise RuntimeError("deliberate boot failure")

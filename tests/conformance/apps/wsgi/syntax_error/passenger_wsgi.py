# Boot-failure app: line 3 does not parse ("invalid syntax").

application = = None

"""``kosmos-fl simulate``: the production apps on Flower's simulation engine, and the simulation
engine's faster message dispatch."""

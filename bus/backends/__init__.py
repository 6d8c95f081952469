"""One package per backend: its descriptor in `__init__`, its bus in `bus.py`, its admin side
(backlog probe, dead-letter store, topology cleanup) in `admin.py`. `bus.registry` lists the
descriptors; the rest is imported only once a backend is chosen."""

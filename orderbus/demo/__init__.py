"""`orderbus demo`: scripted scenarios that make the broker concepts visible, each printing a
table and a one-line lesson (see `docs/`). `python -m orderbus.demo.crash_worker` is the
process scenario 4 kills."""

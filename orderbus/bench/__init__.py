"""`orderbus bench`: what the bus and the services cost, measured next to the raw clients.

A benchmark, never a test: it prints figures (medians of several runs) and the baseline each
was measured against in the same run, and asserts nothing about them.
"""

"""The chassis every service runs on: settings, database, inbox, metrics, HTTP basics.

Not a service: services import it (and `bus`, `contracts`), never each other.
"""

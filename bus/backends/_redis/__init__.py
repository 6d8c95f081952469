"""What the two Redis backends share: the message format, pipelined publishing, the admin side."""

DATA_FIELD = b"__data__"
"""The field of a stream entry that holds the event's body, as FastStream writes and reads it."""

"""The closed-loop demo behind ``keel demo``."""

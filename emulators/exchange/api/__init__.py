"""The ``esebcli2`` API surface of the emulated server: backup and restore contexts."""

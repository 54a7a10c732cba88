"""mailtape reference implementation: agent, backup server, on-tape format, protocols, real drivers."""

__version__ = "0.1.0"

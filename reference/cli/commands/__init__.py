"""Subcommands of ``mailtape``, one module each.

Every module in this package that defines a module-level ``command`` (a click command or group) is
registered under that command's name. A module is added only once its command works end to end:
``mailtape --help`` never lists a placeholder.
"""

"""The ``mailtape`` command line."""

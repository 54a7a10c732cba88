"""Drivers for real devices, behind the same protocols as the emulators (``reference.protocols``):
the Linux st tape driver (``st``), the ``mtx`` changer (``mtx``) and IMAP servers (``imap``)."""

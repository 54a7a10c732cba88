"""The seam between the reference code and the things it drives.

Emulators (``emulators/``) and real drivers (``reference/drivers/``) implement these protocols and
pass the same test suites, so the agent and the backup server never know which one they talk to:

* :mod:`.tape` — a tape drive as the Linux st driver presents it (``/dev/nstN``).
* :mod:`.changer` — a tape library robot (SCSI SMC, as ``mtx`` sees it).
* :mod:`.exchange` — Exchange's streaming backup/restore API (``HrESEBackup*`` / ``HrESERestore*``).
* :mod:`.mailbox` — a message store's mailboxes, folders and items (MAPI / IMAP).
"""

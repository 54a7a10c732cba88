"""Byte layouts of the emulated ESE files: database/streaming file headers, pages, log and checkpoint
headers, the backup trailer page, and their checksums (spec §3)."""

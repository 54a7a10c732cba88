"""Emulated LTO tape drives, cartridges and tape libraries (spec tape-drive.md)."""

"""Shared kernel: database, crypto, errors, ids, cursors, broker."""

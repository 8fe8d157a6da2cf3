"""Accounts, sessions, follows, blocks and privacy settings."""

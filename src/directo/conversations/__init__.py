"""Conversations, message requests, messages, reactions, read state and reports."""

"""Directo: private one-to-one direct messaging for social platforms."""

__version__ = "0.1.0"

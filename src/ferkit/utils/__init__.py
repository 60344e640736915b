"""Plumbing every stage shares, torch-free: errors, atomic writes, lazy attributes, quieting
third-party chatter, and the fixed lists of choices.

Example:
    >>> from ferkit.utils.errors import FerkitError
    >>> issubclass(FerkitError, Exception)
    True
"""

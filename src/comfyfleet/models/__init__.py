"""Typed values shared by every layer."""

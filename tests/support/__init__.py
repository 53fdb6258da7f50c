"""Helpers shared by tests (fixture writers in the real file formats)."""

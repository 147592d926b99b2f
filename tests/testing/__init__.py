"""Tests of the reusable test kit, ``ingest.testing``."""

"""Helpers shared by the test suite: real server processes, clients, test data."""

"""End-to-end tests with several real worker processes on one Redis."""

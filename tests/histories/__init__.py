"""The replay corpus (see README.md) and the script that records it."""

"""Data sources (user files, a local mirror, the Hub), file readers and split strategies."""

"""Serving gateway: model pool, micro-batching, prediction cache, protection, prediction log."""

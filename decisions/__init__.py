"""Decisions from observed traffic: least-privilege security groups and network-aware placement (pure code)."""

"""Contracts and common plumbing shared by the four services of the Marketing tab backend."""

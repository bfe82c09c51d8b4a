"""The four services of the Marketing tab backend."""

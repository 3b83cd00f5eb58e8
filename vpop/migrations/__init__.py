"""vpop.migrations."""

"""vpop.core."""

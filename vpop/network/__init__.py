"""vpop.network."""

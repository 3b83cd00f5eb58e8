"""vpop.identity."""

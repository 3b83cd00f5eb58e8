"""vpop.monitoring."""

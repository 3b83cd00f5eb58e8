"""vpop.lab."""

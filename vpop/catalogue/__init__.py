"""vpop.catalogue."""

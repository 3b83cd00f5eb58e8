"""vpop.selection."""

"""vpop.jobs."""

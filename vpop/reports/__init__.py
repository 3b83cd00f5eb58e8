"""vpop.reports."""

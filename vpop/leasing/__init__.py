"""vpop.leasing."""

"""Billing: the double-entry ledger (accounts, entries, postings, two-phase holds)."""

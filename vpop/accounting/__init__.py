"""Accounting: service sessions per subscriber, line and ISP, and usage rollups."""

"""The AAA part of the JSON API: RADIUS sessions, decisions, rules and NAS clients."""

from __future__ import annotations

"""Audit: routes of the JSON API (to be written)."""

from __future__ import annotations

"""Admin › Alerts: webhook destinations and the signed alerts the worker sends to them."""

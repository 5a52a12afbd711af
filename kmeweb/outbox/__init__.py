"""The outbox: the changes KME must still hear about, written in the same transaction as the
local change they describe (services.py); the sync jobs read them back and push them."""

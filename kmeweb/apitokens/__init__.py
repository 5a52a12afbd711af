"""API tokens: who may call the JSON API (kmeweb.api), with which scopes, until when."""

"""The console's API reference: the OpenAPI document of /api/v1 as a page (`/api-docs`), and
the document itself for download, for a signed-in person reading about the API."""

"""HTTP API and web page frontend for TAG (`tag serve`)."""

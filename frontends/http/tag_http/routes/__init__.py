"""The API's routers, one per resource: jobs, OpenAI-compatible speech, the backend catalog, the web page."""

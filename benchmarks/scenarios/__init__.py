"""One module per measured scenario; each returns a JSON-ready dict."""

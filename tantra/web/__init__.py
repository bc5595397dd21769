"""The HTTP side: the resource tree, the status page and its static files."""

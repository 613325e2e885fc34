"""Official Segment-protocol client libraries, driven unmodified against a local server."""

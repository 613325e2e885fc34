"""The web console (`/ui`): server-rendered pages for people."""

"""Scaffold: to be written."""
raise SystemExit("not written yet")

"""Host tools (CPython) for the fare validator."""

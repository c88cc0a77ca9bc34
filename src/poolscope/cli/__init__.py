"""The ``poolscope`` command: ``poolscope demo`` and ``poolscope run -- python app.py``."""

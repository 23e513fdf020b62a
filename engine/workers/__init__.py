"""`homestream serve --workers N`: one writer process, N worker processes, one supervisor (see supervisor.py)."""

"""The in-process report: its sink, its model, the advice rules and its rendering as text, JSON
and an HTML timeline."""

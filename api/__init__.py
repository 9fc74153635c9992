"""The HTTP edge: the chat page and the shared code behind the routes; `app.py` at the top is its entry."""

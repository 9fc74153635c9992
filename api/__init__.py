"""The HTTP edge: the API's routes and bodies, the OpenAI-compatible routes, the chat page, and the guards in
front of them (access, limits, back-pressure, metrics). `create_app` (api/factory.py) builds it all over one
RagService; `app.py` at the top runs it."""

"""HTTP: the FastAPI app and one thin router per OpenAI resource. The only package that knows HTTP."""

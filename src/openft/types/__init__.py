"""OpenAI wire models; class and field names are identical to ``openai.types``."""

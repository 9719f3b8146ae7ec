"""Fine-tuning wire models (``openai.types.fine_tuning``)."""

"""DeepSeek-OCR / DeepSeek-OCR-2 serving: the logic behind the Triton models and the OpenAI frontend."""

"""What running models needs, below every component: model names resolved to packaged files (`models`), the
GGUF-to-transformers cache (`gguf_cache`) and torch devices (`devices`)."""

"""Model loading: Hugging Face ids, local directories, GGUF files and the embedded default."""

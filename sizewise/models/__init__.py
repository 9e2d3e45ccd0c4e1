"""Model references -> loaded models (zoo, Hugging Face, ONNX, factories, run directories, state dicts)."""

"""Inference engines behind one protocol: Gemini batch, Gemini real-time, and local (torch / ONNX)."""

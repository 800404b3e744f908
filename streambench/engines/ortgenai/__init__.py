"""``--engine onnxruntime-genai`` (``pip install 'streambench[ortgenai]'``): ONNX Runtime GenAI,
timed per token by the same core as transformers.

- :mod:`.export`: an ORT GenAI directory as given (``genai_config.json`` in it), or a
  transformers model built once by ORT GenAI's model builder into the export cache;
- :mod:`.model`: :class:`~.model.OrtGenAIModel`, whose ``generate()`` runs ORT GenAI's
  ``Generator`` loop and feeds the timing streamer around each ``generate_next_token()``;
- :mod:`.engine`: :class:`~.engine.OrtGenAIEngine`, the engine contract's glue (checks before
  any load, ``--device`` -> execution provider, ``--low-bit`` -> builder precision).

Nothing here imports ``onnxruntime_genai`` until a model is checked or loaded.
"""

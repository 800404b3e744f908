"""``--engine llama.cpp`` (``pip install 'streambench[llamacpp]'``): llama.cpp through
llama-cpp-python, timed by the same core as transformers.

- :mod:`.convert`: a transformers Llama/Mistral/Qwen2 directory as one GGUF file, converted once
  into a cache (``f32``/``f16`` written with the ``gguf`` package, ``q8_0``/``q4_0``/``q4_k_m``
  by llama.cpp's quantizer);
- :mod:`.model`: :class:`~.model.LlamaCppModel`, a GGUF model whose ``generate()`` takes the
  timing streamer (``on_prompt``/``on_step``/``end``) and records llama.cpp's own counters;
- :mod:`.engine`: the :class:`~streambench.engines.base.Engine` (what it can do, ``load``,
  ``record``).

Nothing here imports ``llama_cpp`` or ``gguf`` at module level: ``import streambench`` stays
light, and the engine says what to install when they are missing.
"""

"""Serving: the HTTP API (FastAPI) and the Gradio demo, over the public Python API.

``speechlm serve`` starts both in one process on 127.0.0.1 (``speechlm/bin/serve.py``):
the API under ``/v1``, ``/healthz`` and ``/metrics``, the demo under ``/demo``. FastAPI,
uvicorn and Gradio are imported only here, never by ``import speechlm``.

Modules: ``state`` (models loaded once, the bounded request queue, counters), ``app``
(the HTTP API), ``demo`` (the Gradio Blocks), and ``openai_server``: a stdlib
OpenAI-compatible server over one local ``LLM`` (what ``RemoteLLM`` is tested against; it
needs none of the serve extras).
"""

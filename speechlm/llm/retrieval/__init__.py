"""Retrieval for LLM-based ASR: a kNN-LM datastore (text or speech keys) and its keys.

``datastore`` owns the on-disk format (FAISS index + values + config); ``keys`` makes keys
from a runtime LLM (text) or a speech-prefix LLM (speech). The runtime's
``KNNLogitsProcessor`` takes a loaded :class:`Datastore` as its retriever.
"""
from speechlm.llm.retrieval.datastore import (
    Datastore,
    DatastoreConfig,
    DatastoreError,
    FingerprintMismatch,
    build_datastore,
)

__all__ = ["Datastore", "DatastoreConfig", "DatastoreError", "FingerprintMismatch",
           "build_datastore"]

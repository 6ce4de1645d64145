"""Retrieval for LLM-based ASR: a kNN-LM datastore (text or speech keys) and its keys.

``datastore`` owns the on-disk format (FAISS index + values + config); ``keys`` makes keys
from a runtime LLM (text) or a speech-prefix LLM (speech). The runtime's
``KNNLogitsProcessor`` takes a loaded :class:`Datastore` as its retriever.

Utterance-level retrieval read by the LLM itself: ``neighbours`` (top-k store utterances by
speech or text, the query's own utterance excluded), ``cross_attention`` (gated blocks hooked
after decoder layers) and ``augmented`` (the speech LLM with those blocks, trained on
retrieved transcripts; the in-context prefix comparison).
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

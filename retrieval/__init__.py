"""Search over the Chroma knowledge base: embeddings, the store, the retriever.

Entry points: `retrieval.store.open_store`, `retrieval.retriever.build_retriever` (-> `Retriever.search`).
"""

"""Search over the Chroma knowledge base: embeddings, the store, the retriever."""

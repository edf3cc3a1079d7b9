"""Vector IO: embeddings, files, chunking, FAISS + BM25 indexes and vector stores."""

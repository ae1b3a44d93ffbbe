"""The LangGraph agent: safety gates, retrieval, generation, memory."""

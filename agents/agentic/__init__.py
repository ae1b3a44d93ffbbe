"""The agentic workflow: route, grade and retry retrieval, check grounding.

After LangGraph's adaptive, corrective and self-RAG designs, with the deciding parts deterministic.
"""

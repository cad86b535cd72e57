"""LangGraph support every workflow shares: the typed state with its reducers, and Postgres checkpointing.

Note: this package is `shared.langgraph`; the library itself is imported as the top-level `langgraph`.
"""

"""Durable runs: the Postgres run queue, workers that execute LangGraph graphs on it, side effects
recorded once per run and step, replay forks and checkpoint retention."""

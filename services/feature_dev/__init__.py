"""The feature-dev agent: implements and refactors code in an isolated git worktree with the OpenHands SDK."""

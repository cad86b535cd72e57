"""The code-review agent: REVIEW_CODE (lint, complexity, secrets, files, tests -> verdict), EXPLAIN_CODE."""

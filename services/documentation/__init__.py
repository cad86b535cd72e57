"""The documentation agent: GENERATE_DOCS (api, user_guide, deployment_guide) and UPDATE_README."""

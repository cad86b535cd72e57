"""The cicd agent: runs a repository's tests and builds at a ref, stores artifacts, hands them to deploys."""

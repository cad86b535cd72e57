"""The infrastructure agent: deploys releases to environments through pluggable targets (`local` first)."""

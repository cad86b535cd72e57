"""The demo (`devtools demo`) and the sample repository it deploys, documents and heals."""

"""pgreco: a recommender that lives inside PostgreSQL. This package is the thin Python side."""

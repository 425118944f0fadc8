"""Chat: Chatwoot's rails and sidekiq, PostgreSQL with pgvector and Redis; scripts/bootstrap.rb creates the
first super admin (and the website inbox) in a one-off rails container."""

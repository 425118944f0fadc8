"""The edge: the `web` network, the read-only Docker socket proxy, Traefik (component), the client's
portal (portal) and the post-deploy probe of every public endpoint (verify); their settings in config."""

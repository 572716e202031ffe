"""The shared base every app builds on: the API's error family, id lookups, cursor pagination, the
JSON parser's caps and the client-IP rule. It imports no app (docs/ARCHITECTURE.md, "Layers")."""

"""Users, roles, password and token authentication, and the access decorators
that every route must carry (deny by default)."""

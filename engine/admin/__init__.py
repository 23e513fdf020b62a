"""engine.admin: the admin API (SPEC 5.2, `/admin/...` on the main listener) and what it needs."""

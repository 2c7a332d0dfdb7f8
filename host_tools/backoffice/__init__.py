"""The back office: every depot's trip records in one central PostgreSQL store (central.py: schema,
migrations, roles; upload.py: `fare upload`; pgserve.py: the embedded server)."""

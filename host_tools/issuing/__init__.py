"""The issuer's back-office tools: operator and issuer keys, credentials, key rings, and the
signed configurations and deny lists the depots push to readers."""

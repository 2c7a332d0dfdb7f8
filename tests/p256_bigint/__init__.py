# The big-integer P-256 verifier: test oracle and bench baseline (p256.py here says more).

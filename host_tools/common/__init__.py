"""Building blocks every job uses: the bridge to the firmware's modules (fw), signing (ecsign),
the signed-file envelope and the token encodings. Imports nothing else of host_tools."""

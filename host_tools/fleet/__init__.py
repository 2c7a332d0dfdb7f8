"""The technician's tools: firmware builds, flashing, provisioning and deploying readers."""

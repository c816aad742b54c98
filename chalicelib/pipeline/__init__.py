"""Domain code of the four pipeline steps. No HTTP, no AWS: inputs are plain values and connections."""

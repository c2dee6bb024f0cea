"""Phrases the models put in the errors they stream back.

A streamed error reaches the client as text only (Triton drops its status
code on the way), so the frontend tells a server fault or a dead engine from
a refused request by these phrases.
"""

SERVER_FAULT = "generation failed"
ENGINE_DEAD = "the vLLM engine is not running"

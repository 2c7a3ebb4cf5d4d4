"""The join contract with the Signaling service: its Lua scripts and a typed way to call them."""

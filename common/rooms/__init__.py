"""The room domain: the room model, room codes and room events. Pure: no I/O, no other layer."""

"""Background work: the arq jobs and crons, and the room stream's history consumer."""

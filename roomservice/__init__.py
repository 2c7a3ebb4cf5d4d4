"""`roomservice`: the command line, and the only package that imports both the API and the worker."""

"""The use-cases (submit, stop, resume, upload, build a dataset, ...) shared by the native API, the
vendor dialects, the CLI and the web console. Each takes the Database and Settings it needs as
arguments; none reads the environment or knows about HTTP."""

"""The job lifecycle: status transitions, the service shared by API and CLI, and the worker."""

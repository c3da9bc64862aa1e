"""The GitLab side of reviewbot: web service, GitLab clients, storage and the command line (all the I/O)."""

"""The tools around the services: the `orderbus` command (`cli`), the supervisor of `orderbus
up`, the table of services (`specs`), the demo, the benchmark, the soak, the dead-letter
tool, and the generators of the committed files (AsyncAPI documents, broker users, the
Kubernetes overlays). They import the services; no service imports them."""

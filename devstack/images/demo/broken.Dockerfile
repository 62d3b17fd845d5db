# The demo site with a start-up migration that always fails, for testing failed updates.
FROM hostyard/demo:1.1

ENV DEMO_VERSION=broken
LABEL org.opencontainers.image.version="broken"

COPY broken-entrypoint.sh /usr/local/bin/demo-entrypoint

# Run through sh so the script needs no execute bit from the checkout.
ENTRYPOINT ["/bin/sh", "/usr/local/bin/demo-entrypoint"]

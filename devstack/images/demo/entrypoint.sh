#!/bin/sh
# Entrypoint of the demo image. Seeds /data/www on first start, records the
# running version, then execs httpd so the server itself receives signals.
# As PID 1 without an init (docker run --init) httpd ignores SIGTERM, so
# "docker stop" then waits for its timeout and kills it.
set -eu

www=/data/www
mkdir -p "$www"

# Escape the characters HTML gives a meaning to, because SITE_HOSTNAME comes
# from the environment.
html_escape() {
  printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g'
}

if [ ! -e "$www/index.html" ]; then
  version=$(html_escape "$DEMO_VERSION")
  hostname_line=""
  if [ -n "${SITE_HOSTNAME:-}" ]; then
    hostname_line="<p>Hostname: $(html_escape "$SITE_HOSTNAME")</p>"
  fi

  # Write to a temporary file first so a crash never leaves a half-written page.
  cat > "$www/index.html.tmp" <<HTML
<!doctype html>
<html>
<head><meta charset="utf-8"><title>Hostyard demo site</title></head>
<body>
<h1>Hostyard demo site</h1>
<p>Version: $version</p>
$hostname_line
</body>
</html>
HTML
  mv "$www/index.html.tmp" "$www/index.html"
  echo "demo: seeded $www/index.html (version $DEMO_VERSION)"
fi

printf 'ok\n' > "$www/healthz"
printf '%s\n' "$DEMO_VERSION" > "$www/version"

# DEMO_START_DELAY (seconds) imitates an app that takes a while to boot.
if [ -n "${DEMO_START_DELAY:-}" ]; then
  sleep "$DEMO_START_DELAY"
fi

echo "demo: version $DEMO_VERSION listening on port 8080"
exec busybox httpd -f -p 8080 -h "$www"

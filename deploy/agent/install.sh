#!/bin/sh
# Installs edgeloop-agent on a device and enrolls it with the server.
#
#   install.sh --server fleet.example.com:7443 --token <enrollment token> \
#              [--labels site=plant-3,line=2] [--binary ./edgeloop-agent] \
#              [--metrics-listen 127.0.0.1:9464] [--ca-file ca.pem] [--root DIR] [--no-start]
#
# Steps: create the `edgeloop` system user, install the binary and the systemd unit, write
# /etc/edgeloop/agent.env, enroll once as the service user (the token is used here and not
# stored), then enable and start the service. Safe to run again: an enrolled device keeps its
# identity and is not enrolled twice.
#
# --root DIR installs into DIR instead of / (packaging, tests) and skips users and systemd.
set -eu

server=""
token=""
labels=""
binary="$(dirname "$0")/edgeloop-agent"
metrics_listen="127.0.0.1:9464"
ca_file=""
root=""
start=1

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --server) server="$2"; shift 2 ;;
    --token) token="$2"; shift 2 ;;
    --labels) labels="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --metrics-listen) metrics_listen="$2"; shift 2 ;;
    --ca-file) ca_file="$2"; shift 2 ;;
    --root) root="$2"; shift 2 ;;
    --no-start) start=0; shift ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown argument $1" >&2; usage ;;
  esac
done
[ -n "$server" ] || { echo "install.sh: --server HOST:PORT is required" >&2; exit 2; }
[ -x "$binary" ] || { echo "install.sh: agent binary $binary not found (use --binary)" >&2; exit 2; }
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or use --root DIR)" >&2; exit 2
fi

unit_src="$(dirname "$0")/edgeloop-agent.service"
bin_dir="$root/usr/local/bin"
etc_dir="$root/etc/edgeloop"
state_dir="$root/var/lib/edgeloop"
unit_dir="$root/etc/systemd/system"

if [ -z "$root" ] && ! id edgeloop >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/edgeloop --no-create-home --shell /usr/sbin/nologin edgeloop
fi

install -d -m 0755 "$bin_dir" "$etc_dir" "$unit_dir"
install -m 0755 "$binary" "$bin_dir/edgeloop-agent"
install -m 0644 "$unit_src" "$unit_dir/edgeloop-agent.service"
install -d -m 0700 "$state_dir"
if [ -z "$root" ]; then chown edgeloop:edgeloop "$state_dir"; fi

env_file="$etc_dir/agent.env"
{
  echo "EDGELOOP_SERVER=$server"
  echo "EDGELOOP_METRICS_LISTEN=$metrics_listen"
  if [ -n "$labels" ]; then echo "EDGELOOP_LABELS=$labels"; fi
  if [ -n "$ca_file" ]; then echo "EDGELOOP_CA_FILE=$ca_file"; fi
} > "$env_file.tmp"
chmod 0644 "$env_file.tmp"
mv "$env_file.tmp" "$env_file"

# Enroll now, as the service user, so a bad token is reported here and not in the journal.
enroll() {
  set -- "$bin_dir/edgeloop-agent" --server "$server" --state-dir "$state_dir" --enroll-only
  if [ -n "$token" ]; then set -- "$@" --enroll-token "$token"; fi
  if [ -n "$labels" ]; then set -- "$@" --labels "$labels"; fi
  if [ -n "$ca_file" ]; then set -- "$@" --ca-file "$ca_file"; fi
  if [ -z "$root" ]; then
    runuser -u edgeloop -- "$@"
  else
    "$@"
  fi
}
if [ -f "$state_dir/identity/device_id" ]; then
  echo "already enrolled as $(cat "$state_dir/identity/device_id")"
else
  [ -n "$token" ] || { echo "install.sh: --token is required for the first install" >&2; exit 2; }
  enroll
  echo "enrolled as $(cat "$state_dir/identity/device_id")"
fi

if [ -z "$root" ] && [ "$start" = 1 ]; then
  systemctl daemon-reload
  systemctl enable --now edgeloop-agent.service
  echo "edgeloop-agent is running: systemctl status edgeloop-agent"
fi

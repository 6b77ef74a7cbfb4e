#!/usr/bin/env bash
# Simulated hosts for multi-host tests: network namespaces on one Linux bridge (needs root and
# iproute2; scripts/services.sh installs iproute2 when missing).
#
#   scripts/netns.sh up   PREFIX N [SUBNET]  create hosts PREFIX-1..N; SUBNET is the first three
#                                            octets (default 10.231.0); the bridge (the root
#                                            namespace, where a server can run) gets SUBNET.1,
#                                            host i gets SUBNET.(i+1); prints "name ip" per host
#   scripts/netns.sh down PREFIX             remove the hosts, their links and the bridge (idempotent)
#   scripts/netns.sh cut  PREFIX I           cut host I off the network (its link goes down; no
#                                            process is told: TCP peers only see silence)
#   scripts/netns.sh heal PREFIX I           reconnect host I
#   scripts/netns.sh exec PREFIX I CMD...    run CMD inside host I
#
# Names: namespace PREFIX-I, bridge PREFIX-br, veth PREFIX-vI (bridge side) and eth0 inside.
# PREFIX must be short (<= 8 characters: Linux interface names have at most 15).
set -euo pipefail

die() { echo "netns.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: netns.sh up|down|cut|heal|exec PREFIX [N|I] [SUBNET|CMD...]"
cmd=$1 prefix=$2
[ ${#prefix} -le 8 ] || die "prefix '$prefix' is longer than 8 characters (interface names max 15)"
[[ $prefix =~ ^[a-zA-Z0-9]+$ ]] || die "prefix '$prefix' must be letters and digits"
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces and links); run as root"
command -v ip >/dev/null || die "iproute2 ('ip') is missing; install it (scripts/services.sh does)"
br="$prefix-br"

host_ns() { echo "$prefix-$1"; }
host_if() { echo "$prefix-v$1"; }

case "$cmd" in
  up)
    [ $# -ge 3 ] || die "usage: netns.sh up PREFIX N [SUBNET]"
    n=$3 subnet=${4:-10.231.0}
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 250 ] || die "N must be 1..250, got '$n'"
    if ip link show "$br" >/dev/null 2>&1; then die "bridge $br exists already; run 'netns.sh down $prefix' first"; fi
    trap 'echo "netns.sh: setting up failed; removing what was created" >&2; "$0" down "$prefix" >/dev/null 2>&1 || true' ERR
    ip link add "$br" type bridge
    ip addr add "$subnet.1/24" dev "$br"
    ip link set "$br" up
    for i in $(seq 1 "$n"); do
      ns=$(host_ns "$i") veth=$(host_if "$i")
      ip netns add "$ns"
      ip link add "$veth" type veth peer name eth0 netns "$ns"
      ip link set "$veth" master "$br"
      ip link set "$veth" up
      ip -n "$ns" addr add "$subnet.$((i + 1))/24" dev eth0
      ip -n "$ns" link set eth0 up
      ip -n "$ns" link set lo up
      ip -n "$ns" route add default via "$subnet.1"
      echo "$ns $subnet.$((i + 1))"
    done
    trap - ERR
    ;;
  down)
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$prefix-[0-9]+$" || true); do
      ip netns del "$ns" 2>/dev/null || true
    done
    for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^$prefix-v[0-9]+$" || true); do
      ip link del "$link" 2>/dev/null || true
    done
    ip link del "$br" 2>/dev/null || true
    ;;
  cut|heal)
    [ $# -ge 3 ] || die "usage: netns.sh $cmd PREFIX I"
    veth=$(host_if "$3")
    ip link show "$veth" >/dev/null 2>&1 || die "host $3 of '$prefix' does not exist ($veth missing)"
    ip link set "$veth" "$([ "$cmd" = cut ] && echo down || echo up)"
    ;;
  exec)
    [ $# -ge 4 ] || die "usage: netns.sh exec PREFIX I CMD..."
    ns=$(host_ns "$3"); shift 3
    exec ip netns exec "$ns" "$@"
    ;;
  *) die "unknown command '$cmd' (up, down, cut, heal, exec)" ;;
esac

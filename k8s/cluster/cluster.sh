#!/usr/bin/env bash
# A single-node Kubernetes for the tests, on this machine, from the binaries k8s/build/build.sh
# caches (Kubernetes, CoreDNS, etcd) and Debian's containerd, runc and CNI plugins.
#
#   k8s/cluster/cluster.sh up       start it (idempotent); prints the kubeconfig path last
#   k8s/cluster/cluster.sh down     stop every process it started, remove its network and state
#   k8s/cluster/cluster.sh status   exit 0 when the API answers and the node is Ready
#   k8s/cluster/cluster.sh images   build the test images (k8s/image/build-images.sh), import them
#   k8s/cluster/cluster.sh import IMAGE...   copy images of the private dockerd into the node's containerd
#   k8s/cluster/cluster.sh import-built IMAGE   the same for an image skaffold built (the `local`
#                                   profile's after-build hook), also under the tag skaffold deploys
#   k8s/cluster/cluster.sh dockerd-up|dockerd-down   a private dockerd for image builds
#
# Layout (nothing of it is shared with another cluster or a system daemon):
#   node IP 10.250.0.1 on the host end of a veth whose peer sits in the netns lgpg-node (the
#   kubelet refuses a loopback node IP); pods 10.244.0.0/24 on the bridge lgpg-cni0; Services
#   10.96.0.0/24; cluster DNS: CoreDNS on 10.250.0.1:53, serving cluster.local only.
#   Pod traffic may go to pods, Services and the node, nothing else: what leaves the pod network
#   through the host (off the machine, cloud metadata addresses included) is dropped.
#   Processes, sockets, state and logs: $STATE (default /var/lib/langgraph-pg/cluster),
#   $RUN (default /run/langgraph-pg/cluster). Logs: $STATE/logs/<component>.log.
# The sandbox these tests run in lacks CAP_SYS_RESOURCE, so no process may ask for a negative
# oom_score_adj: containerd's restrict_oom_score_adj, the kubelet's and kube-proxy's oomScoreAdj 0.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
STATE="${STATE:-/var/lib/langgraph-pg/cluster}"
RUN="${RUN:-/run/langgraph-pg/cluster}"
NODE_NAME="lgpg-node"
NODE_IP="10.250.0.1"
PEER_IP="10.250.0.2"
NETNS="lgpg-node"
VETH="lgpg-node0"
BRIDGE="lgpg-cni0"
POD_CIDR="10.244.0.0/24"
SERVICE_CIDR="10.96.0.0/24"
API_SERVICE_IP="10.96.0.1"
CHAIN="LGPG-FORWARD"
PAUSE_IMAGE="${PAUSE_IMAGE:-registry.k8s.io/pause:3.10}"
DOCKER_SOCK="/run/langgraph-pg/docker.sock"

log() { echo "cluster: $*" >&2; }
die() { echo "cluster: $*" >&2; exit 1; }

built() {  # built NAME: the newest cached build of a cluster binary, or nothing (none built yet)
    local found="" f
    for f in /var/cache/langgraph-pg/k8s/v*/bin/"$1"; do [ -x "$f" ] && found="$f"; done
    echo "$found"
}

binaries() {  # sets K8S_BIN, COREDNS, ETCD from the build cache (builds what is missing)
    local line
    while IFS= read -r line; do
        case "$line" in
            K8S_BIN=*) K8S_BIN="${line#K8S_BIN=}" ;;
            COREDNS=*) COREDNS="${line#COREDNS=}" ;;
            ETCD=*) ETCD="${line#ETCD=}" ;;
        esac
    done < <("$repo/k8s/build/build.sh")
    [ -n "${K8S_BIN:-}" ] && [ -n "${COREDNS:-}" ] && [ -n "${ETCD:-}" ] || die "k8s/build/build.sh gave no binaries"
    for tool in containerd runc ctr iptables ip openssl conntrack socat; do
        command -v "$tool" >/dev/null || die "'$tool' is needed (apt-get install containerd runc iptables iproute2 openssl conntrack socat)"
    done
    [ -x /usr/lib/cni/bridge ] || die "no CNI plugins in /usr/lib/cni (apt-get install containernetworking-plugins)"
}

kubeconfig() {  # kubeconfig FILE USER TOKEN
    cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: lgpg
    cluster:
      server: https://$NODE_IP:6443
      certificate-authority: $STATE/pki/ca.crt
users:
  - name: $2
    user:
      token: $3
contexts:
  - name: lgpg
    context: {cluster: lgpg, user: $2}
current-context: lgpg
EOF
    chmod 0600 "$1"
}

pki() {
    local p="$STATE/pki"
    [ -f "$p/.complete" ] && return
    mkdir -p "$p"
    chmod 0700 "$p"
    (
        cd "$p"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
            -subj "/CN=langgraph-pg-test-ca" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
            -subj "/CN=kube-apiserver" 2>/dev/null
        printf 'subjectAltName=IP:%s,IP:%s,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
            "$NODE_IP" "$API_SERVICE_IP" > apiserver.ext
        openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt \
            -days 3650 -extfile apiserver.ext 2>/dev/null
        # The apiserver's client certificate towards the kubelet (logs, exec, port-forward).
        openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr \
            -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
        printf 'extendedKeyUsage=clientAuth\n' > client.ext
        openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -out kubelet-client.crt -days 3650 -extfile client.ext 2>/dev/null
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
        # Static bearer tokens, one identity per component (token,user,uid,"groups").
        tok() { openssl rand -hex 24; }
        {
            echo "$(tok),admin,admin,\"system:masters\""
            echo "$(tok),system:kube-controller-manager,kcm,"
            echo "$(tok),system:kube-scheduler,scheduler,"
            echo "$(tok),system:node:$NODE_NAME,node,\"system:nodes\""
            echo "$(tok),system:kube-proxy,proxy,"
            echo "$(tok),system:coredns,coredns,"
        } > tokens.csv
        rm -f ./*.csr ./*.ext ./*.srl
    )
    token() { awk -F, -v u="$1" '$2 == u {print $1}' "$p/tokens.csv"; }
    kubeconfig "$STATE/admin.kubeconfig" admin "$(token admin)"
    kubeconfig "$p/kcm.kubeconfig" kcm "$(token system:kube-controller-manager)"
    kubeconfig "$p/scheduler.kubeconfig" scheduler "$(token system:kube-scheduler)"
    kubeconfig "$p/kubelet.kubeconfig" kubelet "$(token "system:node:$NODE_NAME")"
    kubeconfig "$p/proxy.kubeconfig" proxy "$(token system:kube-proxy)"
    kubeconfig "$p/coredns.kubeconfig" coredns "$(token system:coredns)"
    touch "$p/.complete"
}

network() {
    if ! ip netns list | grep -qw "$NETNS"; then
        ip netns add "$NETNS"
    fi
    if ! ip link show "$VETH" >/dev/null 2>&1; then
        ip link add "$VETH" type veth peer name eth0 netns "$NETNS"
        ip addr add "$NODE_IP/30" dev "$VETH"
        ip link set "$VETH" up
        ip -n "$NETNS" addr add "$PEER_IP/30" dev eth0
        ip -n "$NETNS" link set eth0 up
        ip -n "$NETNS" link set lo up
    fi
    # Back through the node (only ever to the node and the pods): so the isolation test's listener
    # there could answer a pod, were the pod's packets not dropped (k8s-tests/test_isolation.py).
    ip -n "$NETNS" route replace default via "$NODE_IP"
    sysctl -qw net.ipv4.ip_forward=1
    sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
    # Pod traffic: within the pod network only (Service addresses are DNATed to pods before
    # FORWARD; the node's own addresses are INPUT, not FORWARD). Everything else is dropped.
    iptables -N "$CHAIN" 2>/dev/null || iptables -F "$CHAIN"
    iptables -A "$CHAIN" -s "$POD_CIDR" -d "$POD_CIDR" -j ACCEPT
    iptables -A "$CHAIN" -s "$POD_CIDR" -j DROP
    iptables -A "$CHAIN" -d "$POD_CIDR" -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP
    iptables -C FORWARD -j "$CHAIN" 2>/dev/null || iptables -I FORWARD 1 -j "$CHAIN"
    # Pods reach the node's services (API server, kubelet, DNS) on the node IP only.
    iptables -N LGPG-INPUT 2>/dev/null || iptables -F LGPG-INPUT
    iptables -A LGPG-INPUT -s "$POD_CIDR" -d "$NODE_IP" -j ACCEPT
    iptables -A LGPG-INPUT -s "$POD_CIDR" -d "${POD_CIDR%.*}.1" -j ACCEPT
    iptables -A LGPG-INPUT -s "$POD_CIDR" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    iptables -A LGPG-INPUT -s "$POD_CIDR" -j DROP
    iptables -C INPUT -j LGPG-INPUT 2>/dev/null || iptables -I INPUT 1 -j LGPG-INPUT
    mkdir -p "$STATE/cni/net.d"
    write_if_changed "$STATE/cni/net.d/10-lgpg.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "lgpg",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$STATE/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

write_if_changed() {  # write_if_changed FILE < content: a running component watching FILE
    # (kube-proxy exits when its configuration file is written) sees no write when nothing changed.
    local tmp="$1.tmp.$$"
    cat > "$tmp"
    if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

start() {  # start NAME COMMAND...: in the background, own session, log and pid in $STATE/$RUN
    local name="$1"; shift
    if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
        return
    fi
    setsid "$@" >> "$STATE/logs/$name.log" 2>&1 < /dev/null &
    echo $! > "$RUN/$name.pid"
}

wait_for() {  # wait_for WHAT SECONDS COMMAND...
    local what="$1" seconds="$2"; shift 2
    local deadline=$(( $(date +%s) + seconds ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            die "$what not ready after ${seconds}s (logs: $STATE/logs/)"
        fi
        sleep 0.5
    done
}

up() {
    local started=$(date +%s)
    binaries
    mkdir -p "$STATE/logs" "$RUN" "$STATE/etcd" "$STATE/kubelet" "$STATE/containerd"
    chmod 0700 "$STATE/etcd"
    pki
    network
    local kubectl="$K8S_BIN/kubectl --kubeconfig $STATE/admin.kubeconfig"

    start etcd "$ETCD" --name lgpg --data-dir "$STATE/etcd" --unsafe-no-fsync \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster lgpg=http://127.0.0.1:2380

    write_if_changed "$STATE/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd"
[grpc]
  address = "$RUN/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_unprivileged_ports = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
EOF
    start containerd containerd --config "$STATE/containerd.toml"

    start kube-apiserver "$K8S_BIN/kube-apiserver" \
        --etcd-servers=http://127.0.0.1:2379 \
        --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port=6443 \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --tls-cert-file="$STATE/pki/apiserver.crt" --tls-private-key-file="$STATE/pki/apiserver.key" \
        --client-ca-file="$STATE/pki/ca.crt" --token-auth-file="$STATE/pki/tokens.csv" \
        --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$STATE/pki/sa.pub" \
        --service-account-signing-key-file="$STATE/pki/sa.key" \
        --kubelet-client-certificate="$STATE/pki/kubelet-client.crt" \
        --kubelet-client-key="$STATE/pki/kubelet-client.key" \
        --kubelet-preferred-address-types=InternalIP,Hostname \
        --allow-privileged=false --profiling=false --endpoint-reconciler-type=lease
    wait_for "kube-apiserver" 120 $kubectl get --raw /readyz
    # The controller-manager crashes when it starts before RBAC bootstrap has given its identity
    # the authentication ConfigMap: wait until that identity can read it.
    wait_for "RBAC bootstrap" 120 "$K8S_BIN/kubectl" --kubeconfig "$STATE/pki/kcm.kubeconfig" \
        get configmap -n kube-system extension-apiserver-authentication

    start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
        --kubeconfig="$STATE/pki/kcm.kubeconfig" \
        --authentication-kubeconfig="$STATE/pki/kcm.kubeconfig" \
        --authorization-kubeconfig="$STATE/pki/kcm.kubeconfig" \
        --bind-address=127.0.0.1 --leader-elect=false \
        --service-account-private-key-file="$STATE/pki/sa.key" --root-ca-file="$STATE/pki/ca.crt" \
        --use-service-account-credentials=true --service-cluster-ip-range="$SERVICE_CIDR" \
        --cluster-signing-cert-file="$STATE/pki/ca.crt" --cluster-signing-key-file="$STATE/pki/ca.key" \
        --profiling=false
    start kube-scheduler "$K8S_BIN/kube-scheduler" \
        --kubeconfig="$STATE/pki/scheduler.kubeconfig" \
        --authentication-kubeconfig="$STATE/pki/scheduler.kubeconfig" \
        --authorization-kubeconfig="$STATE/pki/scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --leader-elect=false --profiling=false

    printf 'nameserver %s\n' "$NODE_IP" | write_if_changed "$STATE/resolv.conf"
    write_if_changed "$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $STATE/resolv.conf
containerRuntimeEndpoint: unix://$RUN/containerd.sock
imageServiceEndpoint: unix://$RUN/containerd.sock
serializeImagePulls: false
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
maxPods: 60
podPidsLimit: 4096
shutdownGracePeriod: 0s
EOF
    start kubelet "$K8S_BIN/kubelet" --config="$STATE/kubelet.yaml" \
        --kubeconfig="$STATE/pki/kubelet.kubeconfig" --hostname-override="$NODE_NAME" \
        --node-ip="$NODE_IP" --root-dir="$STATE/kubelet" --cert-dir="$STATE/kubelet/pki"

    write_if_changed "$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/pki/proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$NODE_IP/32]
oomScoreAdj: 0
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
    start kube-proxy "$K8S_BIN/kube-proxy" --config="$STATE/kube-proxy.yaml"

    # CoreDNS reads Services and EndpointSlices as its own identity.
    $kubectl apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "lgpg:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "lgpg:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "lgpg:coredns"}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}
EOF
    write_if_changed "$STATE/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $STATE/pki/coredns.kubeconfig lgpg
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOF
    start coredns "$COREDNS" -conf "$STATE/Corefile"

    wait_for "node $NODE_NAME" 180 sh -c "$kubectl get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
    # A default StorageClass is not needed: the tests use no volumes but emptyDir.
    wait_for "the default ServiceAccount" 120 $kubectl get serviceaccount default -n default
    log "up in $(( $(date +%s) - started )) s: KUBECONFIG=$STATE/admin.kubeconfig"
    echo "$STATE/admin.kubeconfig"
}

status() {
    [ -f "$STATE/admin.kubeconfig" ] || return 1
    local kubectl
    kubectl="$(built kubectl)"
    [ -n "$kubectl" ] || return 1
    "$kubectl" --kubeconfig "$STATE/admin.kubeconfig" --request-timeout=5s get node "$NODE_NAME" \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

stop_pid() {  # stop_pid NAME: TERM, then KILL after a grace period, the process we started
    local pidfile="$RUN/$1.pid" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

down() {
    local ctr="ctr --address $RUN/containerd.sock --namespace k8s.io"
    for c in coredns kube-proxy kubelet kube-scheduler kube-controller-manager; do stop_pid "$c"; done
    # The pods' containers and their shims: ask containerd, then stop it.
    local netns_ours=""
    if [ -S "$RUN/containerd.sock" ] && [ -f "$RUN/containerd.pid" ]; then
        # The pods' network namespaces, as our containerd's containers name them (never another's).
        netns_ours="$(for c in $($ctr containers ls -q 2>/dev/null); do $ctr containers info "$c" 2>/dev/null; done \
            | python3 -c 'import json, sys
text, seen = sys.stdin.read(), set()
decoder, i = json.JSONDecoder(), 0
while i < len(text):
    if text[i].isspace():
        i += 1
        continue
    info, i = decoder.raw_decode(text, i)
    for ns in (info.get("Spec") or {}).get("linux", {}).get("namespaces", []):
        if ns.get("type") == "network" and "/netns/cni-" in ns.get("path", ""):
            seen.add(ns["path"].rsplit("/", 1)[1])
print(" ".join(sorted(seen)))')"
        for task in $($ctr tasks ls -q 2>/dev/null); do
            $ctr tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
        done
        for task in $($ctr tasks ls -q 2>/dev/null); do
            for _ in $(seq 20); do $ctr tasks delete "$task" >/dev/null 2>&1 && break; sleep 0.25; done
        done
    fi
    stop_pid containerd
    stop_pid kube-apiserver
    stop_pid etcd
    # Mounts left by the kubelet and containerd under our directories only.
    if [ -d "$STATE" ]; then
        awk -v s="$STATE" -v r="$RUN" '$2 ~ "^" s "/" || $2 ~ "^" r "/" {print $2}' /proc/mounts \
            | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    fi
    for ns in $netns_ours; do ip netns delete "$ns" 2>/dev/null || true; done
    local kube_proxy
    kube_proxy="$(built kube-proxy)"
    if [ -n "$kube_proxy" ] && iptables -S KUBE-SERVICES -t nat >/dev/null 2>&1; then
        "$kube_proxy" --cleanup >/dev/null 2>&1 || true
    fi
    # The chains our kubelet made (its canaries and the localnet firewall), unless a kubelet still runs.
    if ! pgrep -x kubelet >/dev/null; then
        local table chain
        for table in filter nat mangle; do
            iptables -t "$table" -D INPUT -j KUBE-FIREWALL 2>/dev/null || true
            iptables -t "$table" -D OUTPUT -j KUBE-FIREWALL 2>/dev/null || true
            for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
                iptables -t "$table" -F "$chain" 2>/dev/null || true
                iptables -t "$table" -X "$chain" 2>/dev/null || true
            done
        done
    fi
    iptables -D FORWARD -j "$CHAIN" 2>/dev/null || true
    iptables -F "$CHAIN" 2>/dev/null || true
    iptables -X "$CHAIN" 2>/dev/null || true
    iptables -D INPUT -j LGPG-INPUT 2>/dev/null || true
    iptables -F LGPG-INPUT 2>/dev/null || true
    iptables -X LGPG-INPUT 2>/dev/null || true
    ip link delete "$BRIDGE" 2>/dev/null || true
    ip link delete "$VETH" 2>/dev/null || true
    ip netns delete "$NETNS" 2>/dev/null || true
    rm -rf "$STATE" "$RUN"
    log "down"
}

dockerd_up() {
    mkdir -p "$(dirname "$DOCKER_SOCK")" /var/lib/langgraph-pg/docker
    if [ -S "$DOCKER_SOCK" ] && docker_cli info >/dev/null 2>&1; then return; fi
    command -v dockerd >/dev/null || die "'dockerd' is needed (apt-get install docker.io)"
    # No bridge and no iptables rules: builds use the host network, nothing else runs here.
    setsid dockerd --host "unix://$DOCKER_SOCK" --data-root /var/lib/langgraph-pg/docker \
        --exec-root /run/langgraph-pg/docker-exec --pidfile /run/langgraph-pg/dockerd.pid \
        --bridge=none --iptables=false --ip-masq=false \
        >> /var/lib/langgraph-pg/dockerd.log 2>&1 < /dev/null &
    wait_for dockerd 60 docker_cli info
}

docker_cli() { DOCKER_HOST="unix://$DOCKER_SOCK" "${DOCKER:-/usr/bin/docker}" "$@"; }

dockerd_down() {
    local pid
    [ -f /run/langgraph-pg/dockerd.pid ] || return 0
    pid="$(cat /run/langgraph-pg/dockerd.pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
}

images() {  # build the images (k8s/image/build-images.sh) and import them into the node's containerd
    [ -S "$RUN/containerd.sock" ] || die "the cluster is not up (k8s/cluster/cluster.sh up)"
    dockerd_up
    DOCKER_HOST="unix://$DOCKER_SOCK" DOCKER="${DOCKER:-/usr/bin/docker}" "$repo/k8s/image/build-images.sh"
    import_images "$PAUSE_IMAGE" langgraph-pg-postgres:15 "${K8S_TEST_IMAGE:-langgraph-pg:k8s-test}"
}

import_images() {  # import_images IMAGE...: from the private dockerd into the node's containerd
    [ -S "$RUN/containerd.sock" ] || die "the cluster is not up (k8s/cluster/cluster.sh up)"
    [ "$#" -gt 0 ] || die "import: name at least one image"
    # One archive for all of them: layers they share are written and unpacked once.
    docker_cli save "$@" | ctr --address "$RUN/containerd.sock" --namespace k8s.io images import - >/dev/null
    log "imported $* into the node's containerd"
}

import_built() {  # import_built IMAGE: an image skaffold just built (the `local` profile's after-build hook)
    # skaffold deploys an image it did not push as <name>:<image ID without "sha256:">
    # (docker.TagWithImageID), a tag it adds only after the hook: give the image that tag here,
    # so the tag the pods name is in containerd too.
    local image="${1:?import-built: name the image}" id
    id="$(docker_cli image inspect --format '{{.Id}}' "$image")"
    docker_cli tag "$image" "${image%:*}:${id#sha256:}"
    import_images "$image" "${image%:*}:${id#sha256:}"
}

case "${1:-}" in
    up) up ;;
    images) images ;;
    import) shift; import_images "$@" ;;
    import-built) shift; import_built "$@" ;;
    down) down ;;
    status) status ;;
    dockerd-up) dockerd_up ;;
    dockerd-down) dockerd_down ;;
    *) echo "usage: k8s/cluster/cluster.sh up|down|status|images|import IMAGE...|import-built IMAGE|dockerd-up|dockerd-down" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# request-resources.sh - the SLICES BI scripted flow against a running slices-blueprint:
#   get a token -> create a VM -> wait until it runs -> print SSH access -> delete it.
#
# Plain HTTP (curl + jq) against the BI API, so it shows exactly what a client sends:
#   POST   /apis/bi.slices.eu/v1alpha2/resources        -> a task
#   GET    /apis/bi.slices.eu/v1alpha2/tasks/{id}       -> status, completed (0-100)
#   GET    /apis/bi.slices.eu/v1alpha2/resources/{id}   -> status, access
#   DELETE /apis/bi.slices.eu/v1alpha2/resources/{id}   -> a task
# Tokens come from `slices-blueprint dev token` (a service in dev mode); against a SLICES
# site, export SLICES_BLUEPRINT_TOKEN (`slices experiment jwt <exp>`) and
# SLICES_BLUEPRINT_USER_TOKEN (`slices auth id-token <url>`) instead.
#
# Settings (environment):
#   SLICES_BLUEPRINT_URL  service URL                 (default http://127.0.0.1:8000)
#   FLAVOR                flavor friendly name        (default: the first vm flavor)
#   IMAGE                 disk image friendly name    (default: the first vm image)
#   NETWORK               network name(s), comma-separated (default: the project's only one)
#   NAME                  resource name               (default: demo-vm-<random>)
#   SSH_KEY_FILE          public key to install       (default: ~/.ssh/id_*.pub if present)
#   PUBLIC_IPV4=1         ask for a floating IP
#   KEEP=1                do not delete at the end
# Needs: curl, jq, and `slices-blueprint` on PATH for dev tokens.
set -euo pipefail

URL=${SLICES_BLUEPRINT_URL:-http://127.0.0.1:8000}
BI="$URL/apis/bi.slices.eu/v1alpha2"
NAME=${NAME:-demo-vm-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')}
TIMEOUT=${TIMEOUT:-600}

say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# api METHOD PATH [JSON]: call the BI API; print the body; exit with the problem detail on error
api() {
    local out status
    out=$(mktemp)
    status=$(curl -sS -o "$out" -w '%{http_code}' -X "$1" "$BI$2" \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        ${3:+--data "$3"}) || { rm -f "$out"; die "cannot reach $URL"; }
    if [ "$status" -ge 400 ]; then
        say "$1 $2 -> HTTP $status: $(jq -r '.detail // .title // .' "$out" 2>/dev/null || cat "$out")"
        rm -f "$out"; exit 1
    fi
    cat "$out"; rm -f "$out"
}

# wait_task TASK_ID: follow a task's progress until it ends; fail unless it succeeded
wait_task() {
    local task status completed message deadline=$((SECONDS + TIMEOUT)) last=""
    while :; do
        task=$(api GET "/tasks/$1")
        read -r status completed < <(jq -r '"\(.status) \(.completed)"' <<<"$task")
        message=$(jq -r '.message // ""' <<<"$task")
        [ "$status $completed $message" != "$last" ] && say "task $1: $status $completed% $message"
        last="$status $completed $message"
        case $status in
            succeeded) return 0 ;;
            failed|cancelled) die "task $status: $(jq -r '[.error, (.subtasks[]?.error)] | map(select(.)) | join("; ")' <<<"$task")" ;;
        esac
        [ $SECONDS -lt $deadline ] || die "task $1 still $status after ${TIMEOUT}s"
        sleep 1
    done
}

# pick KIND NAME: the id of the vm flavor / disk image with that friendly name (or the first)
pick() {
    local rows
    rows=$(api GET "/$1" | jq '[.[] | select(.flavor_type == "vm")]')
    jq -r --arg n "${2:-}" 'map(select($n == "" or .friendly_name == $n)) | first | .id // empty' <<<"$rows"
}

for tool in curl jq slices-blueprint; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

# 1. tokens: an experiment JWT for writes, a user id-token carried in the request body
if [ -z "${SLICES_BLUEPRINT_TOKEN:-}" ]; then
    TOKEN=$(slices-blueprint dev token --url "$URL" --experiment demo-exp)
    USER_TOKEN=$(slices-blueprint dev token --url "$URL")
    say "got dev tokens from $URL/dev/issuer"
else
    TOKEN=$SLICES_BLUEPRINT_TOKEN
    USER_TOKEN=${SLICES_BLUEPRINT_USER_TOKEN:-}
fi

# 2. what to boot
FLAVOR_ID=$(pick flavors "${FLAVOR:-}")
IMAGE_ID=$(pick disk-images "${IMAGE:-}")
[ -n "$FLAVOR_ID" ] && [ -n "$IMAGE_ID" ] || die "no vm flavor/image ${FLAVOR:+named $FLAVOR }in the catalog: import the cloud's catalog first"
KEY_FILE=${SSH_KEY_FILE:-$(ls ~/.ssh/id_*.pub 2>/dev/null | head -n1 || true)}
KEYS=$( [ -n "$KEY_FILE" ] && jq -Rn '[inputs | select(length > 0)]' <"$KEY_FILE" || echo '[]')
NETWORKS=$(jq -cn --arg n "${NETWORK:-}" '$n | split(",") | map(select(length > 0))')

# 3. create
BODY=$(jq -n --arg name "$NAME" --arg flavor "$FLAVOR_ID" --arg image "$IMAGE_ID" \
    --argjson keys "$KEYS" --argjson nets "$NETWORKS" --arg user_token "$USER_TOKEN" \
    --argjson public "$([ "${PUBLIC_IPV4:-0}" = 1 ] && echo true || echo false)" \
    --arg request_id "$(cat /proc/sys/kernel/random/uuid)" '{
      request_id: $request_id,
      resources: [{friendly_name: $name, flavor_id: $flavor, disk_image_id: $image,
                   ssh_authorized_keys: $keys, network_interfaces: $nets, public_ipv4: $public,
                   userdata: "#cloud-config\npackage_update: false\n"}],
      tokens: (if $user_token == "" then [] else [{jwt: $user_token}] end)}')
TASK=$(api POST /resources "$BODY")
TASK_ID=$(jq -r .id <<<"$TASK")
RESOURCE_ID=$(jq -r '.resource_ids[0]' <<<"$TASK")
say "creating $NAME as $RESOURCE_ID (task $TASK_ID)"

# 4. wait until it runs
wait_task "$TASK_ID"
RESOURCE=$(api GET "/resources/$RESOURCE_ID")
[ "$(jq -r .status <<<"$RESOURCE")" = running ] || die "resource is $(jq -r '"\(.status): \(.status_reason)"' <<<"$RESOURCE")"

# 5. SSH access
say "running: server $(jq -r .provider_resource_id <<<"$RESOURCE")"
jq -r '.access | "addresses: \(.addresses // {} | tojson)\nssh: ssh -p \(.ssh_port // 22) \(.ssh_user // "root")@\(.ssh_host // .ipv4 // "(no address)")"' <<<"$RESOURCE"
jq -r 'select(.ssh_command) | "ssh command: \(.ssh_command)"' <<<"$RESOURCE"

# 6. delete
if [ "${KEEP:-0}" = 1 ]; then say "KEEP=1: leaving $RESOURCE_ID running"; exit 0; fi
DELETE_TASK=$(api DELETE "/resources/$RESOURCE_ID" | jq -r .id)
say "deleting $RESOURCE_ID (task $DELETE_TASK)"
wait_task "$DELETE_TASK"
say "deleted: $(api GET "/resources/$RESOURCE_ID" | jq -r .status)"

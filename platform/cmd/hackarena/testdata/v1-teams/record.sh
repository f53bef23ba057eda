#!/usr/bin/env bash
# record.sh writes snapshot.rdb and expected.json: state written by the
# version before members existed (teams were one account with one
# password), for TestEndToEndDataOfTheSingleAccountVersionIsKept.
#
# It builds that version from git, runs its server on a redis-server of its
# own, registers teams, submits and judges a plugin, selects a final,
# changes a password and reveals the private board through its API, and
# saves Redis. Run it from the repository root (it needs git, go,
# redis-server and bubblewrap):
#   platform/cmd/hackarena/testdata/v1-teams/record.sh [COMMIT]
set -euo pipefail
commit=${1:-d7021dc}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; git worktree remove --force "$work/src" 2>/dev/null || true; rm -rf "$work"' EXIT
git worktree add -q --detach "$work/src" "$commit"
(cd "$work/src" && go build -o "$work/hackarena" ./platform/cmd/hackarena && CGO_ENABLED=0 go build -o "$work/hackctl" ./sdk/cmd/hackctl \
  && CGO_ENABLED=0 go build -o "$work/plugin" ./plugins/mnist-centroid)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
api=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/redis"
redis-server --port "$port" --dir "$work/redis" --save '' --appendonly no --daemonize no > "$work/redis.log" 2>&1 &
secret=$(cat "$here/jwt.secret")
(cd "$work/src" && REDIS_URL="redis://127.0.0.1:$port/0" HACKARENA_ADDR="127.0.0.1:$api" HACKARENA_DATA_DIR="$work/var" \
  HACKARENA_SANDBOX=bwrap HACKARENA_JWT_SECRET="$secret" HACKARENA_TOKEN_TTL=87600h HACKARENA_ORGANIZER_PASSWORD=organizer-password-1 \
  "$work/hackarena" serve > "$work/server.log" 2>&1) &
url="http://127.0.0.1:$api"
for _ in $(seq 120); do curl -fs "$url/readyz" >/dev/null && break; sleep 0.5; done
post() { curl -fsS -X POST -H 'Content-Type: application/json' ${3:+-H "Authorization: Bearer $3"} -d "$2" "$url$1"; }
token() { post /api/v1/auth/token "{\"name\":\"$1\",\"password\":\"$2\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'; }
post /api/v1/teams '{"name":"Old Alpha","password":"alpha-password-1"}' >/dev/null
post /api/v1/teams '{"name":"beta","password":"beta-password-1"}' >/dev/null
alpha=$(token "Old Alpha" alpha-password-1)
beta=$(token beta beta-password-1)
submit() { curl -fsS -H "Authorization: Bearer $1" -F "plugin=@$work/plugin" "$url/api/v1/challenges/mnist/submissions" | python3 -c 'import json,sys; print(json.load(sys.stdin)["submission"]["id"])'; }
a1=$(submit "$alpha"); a2=$(submit "$alpha"); b1=$(submit "$beta")
for id in "$a1" "$a2" "$b1"; do
  for _ in $(seq 240); do
    st=$(curl -fsS -H "Authorization: Bearer $alpha" "$url/api/v1/submissions/$id" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["submission"]["status"])' 2>/dev/null || \
         curl -fsS -H "Authorization: Bearer $beta" "$url/api/v1/submissions/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["submission"]["status"])')
    [ "$st" = scored ] && break
    [ "$st" = failed ] && { echo "submission $id failed"; cat "$work/server.log"; exit 1; }
    sleep 0.5
  done
done
post "/api/v1/submissions/$a2/final" '{}' "$alpha" >/dev/null
post /api/v1/teams/me/password '{"current_password":"alpha-password-1","new_password":"alpha-password-2"}' "$alpha" >/dev/null
organizer=$(token organizer organizer-password-1)
post /api/v1/challenges/mnist/reveal '{}' "$organizer" >/dev/null
# A token the old version issued (valid for ten years, so the test
# outlives it), kept by a participant across the upgrade.
beta=$(token beta beta-password-1)
public=$(curl -fsS "$url/api/v1/challenges/mnist/leaderboard?board=public")
private=$(curl -fsS "$url/api/v1/challenges/mnist/leaderboard?board=private")
redis-cli -p "$port" SAVE >/dev/null
cp "$work/redis/dump.rdb" "$here/snapshot.rdb"
python3 - "$here/expected.json" "$a1" "$a2" "$b1" "$beta" "$public" "$private" <<'PY'
import json, sys
out, a1, a2, b1, beta, public, private = sys.argv[1:]
strip = lambda b: [{k: e[k] for k in ("rank", "team", "score", "submission_id")} for e in json.loads(b)["entries"]]
json.dump({
    "teams": {"Old Alpha": {"password": "alpha-password-2", "submissions": [a2, a1], "final": a2},
              "beta": {"password": "beta-password-1", "submissions": [b1], "token": beta}},
    "organizer_password": "organizer-password-1",
    "public": strip(public), "private": strip(private),
}, open(out, "w"), indent=2)
PY
echo "recorded $here/snapshot.rdb and expected.json from $commit"

/**
 * The relay half of a tunnel: a small POSIX-sh script that the launcher's one SSH connection runs on the
 * relay (no Node or curl needed there). It
 *   - refuses a name another live launcher holds ("taken"), unless the file is this launcher run's own,
 *     in which case it removes the socket that run's killed earlier connection left behind;
 *   - waits for the forwarded socket to exist (socket mode), then says "ready";
 *   - writes every registration line it reads on stdin atomically (umask 077, temp file + rename) and
 *     answers "ok" — heartbeats are just more lines;
 *   - when stdin ends or the connection dies, removes the registration only if it still carries this
 *     connection's nonce (a late cleanup never deletes a newer registration), and removes its socket.
 * Exit codes: 3 registry not writable, 4 name taken.
 */
import { shellQuote } from "./shell-words.js";

// No single quotes in here: the whole script travels inside one.
const SCRIPT = `
set -u
dir=$1; name=$2; id=$3; nonce=$4; sock=$5
umask 077
file="$dir/$name.json"
tmp="$dir/.$name.$nonce.tmp"
fail() { echo "error: $1"; exit "$2"; }
mkdir -p "$dir" 2>/dev/null || fail "cannot create the registry directory $dir" 3
[ -w "$dir" ] || fail "the registry directory $dir is not writable" 3
if [ -f "$file" ]; then
  other=$(sed -n "s/.*\\"socket\\":\\"\\([^\\"]*\\)\\".*/\\1/p" "$file")
  if grep -q "\\"id\\":\\"$id\\"" "$file" 2>/dev/null; then
    # Our own earlier connection, killed before its cleanup could run: its socket is ours to remove.
    case "$other" in "$dir"/*.sock) [ "$other" != "$sock" ] && rm -f "$other" ;; esac
  elif { [ -n "$other" ] && [ -S "$other" ]; } || [ -n "$(find "$file" -mmin -1 2>/dev/null)" ]; then
    echo taken; exit 4
  fi
fi
cleanup() {
  if [ -f "$file" ] && grep -q "\\"nonce\\":\\"$nonce\\"" "$file" 2>/dev/null; then rm -f "$file"; fi
  if [ -n "$sock" ]; then rm -f "$sock"; fi
  rm -f "$tmp"
}
trap cleanup EXIT
trap "exit 0" HUP INT TERM PIPE
if [ -n "$sock" ]; then
  i=0
  while [ ! -S "$sock" ] && [ $i -lt 100 ]; do sleep 0.05 2>/dev/null || sleep 1; i=$((i+1)); done
  [ -S "$sock" ] || fail "the forwarded socket $sock did not appear" 5
fi
echo ready
while IFS= read -r line; do
  printf "%s\\n" "$line" > "$tmp" && mv -f "$tmp" "$file" && echo ok
done
`;

export const REMOTE_EXIT = { registryUnwritable: 3, nameTaken: 4, socketMissing: 5 } as const;

/** The remote command line for ssh: `sh -c '<script>' opencode-relay DIR NAME ID NONCE SOCK`. */
export function remoteCommand(args: { dir: string; name: string; id: string; nonce: string; socket?: string }): string {
  return ["sh", "-c", SCRIPT, "opencode-relay", args.dir, args.name, args.id, args.nonce, args.socket ?? ""].map(shellQuote).join(" ");
}

export { SCRIPT as REMOTE_SCRIPT };

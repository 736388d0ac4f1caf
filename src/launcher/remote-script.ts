/**
 * The relay half of a tunnel: a small POSIX-sh script that the launcher's one SSH connection runs on the
 * relay (no Node or curl needed there). It
 *   - refuses a name another live launcher holds ("taken"), unless the file is this launcher run's own,
 *     in which case it removes the socket that run's killed earlier connection left behind;
 *   - waits for the forwarded socket to exist (socket mode), then says "ready";
 *   - writes every registration line it reads on stdin atomically (umask 077, temp file + rename) and
 *     answers "ok" — heartbeats are just more lines;
 *   - answers a "check" line (sent every few seconds by launchers that saw "caps check") with "alive"
 *     once it has verified that its forwarded socket still exists (gone, e.g. the registry was wiped:
 *     "error: …", exit 7, and the launcher reconnects) and that the registration file is still this
 *     connection's (replaced by garbage, a symlink or someone else's file, or removed: it is rewritten
 *     from the last line, answered "restored");
 *   - when stdin ends or the connection dies, removes the registration only if it still carries this
 *     connection's nonce (a late cleanup never deletes a newer registration), and removes its socket.
 * Exit codes: 3 registry not writable, 4 name taken, 5 the forwarded socket did not appear, 6 refused by
 * a hardened relay's forced command (forcedCommandScript below), 7 the tunnel's socket or registration
 * was lost while connected (worth reconnecting at once).
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
    # Only a plain file name directly in the registry: in case patterns * also matches / and ..
    case "$other" in "$dir"/*/*|*/../*) ;; "$dir"/*.sock) [ "$other" != "$sock" ] && rm -f "$other" ;; esac
  elif { [ -n "$other" ] && [ -S "$other" ]; } || [ -n "$(find "$file" -mmin -1 2>/dev/null)" ]; then
    # sshd bound our forward before running us, and does not remove it: this connection ends here.
    if [ -n "$sock" ]; then rm -f "$sock"; fi
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
echo "caps check"
echo ready
last=
write() { printf "%s\\n" "$1" > "$tmp" && mv -f "$tmp" "$file"; }
while IFS= read -r line; do
  case $line in
    check)
      if [ -n "$sock" ] && [ ! -S "$sock" ]; then echo "error: the forwarded socket $sock is gone (registry directory wiped?)"; exit 7; fi
      if [ -n "$last" ]; then
        cur=
        # Never read a symlink, FIFO or device someone put in our place: only a regular file.
        if [ -f "$file" ] && [ ! -h "$file" ]; then { IFS= read -r cur < "$file"; } 2>/dev/null || :; fi
        case $cur in
          *"\\"nonce\\":\\"$nonce\\""*) ;;
          *)
            # Another launcher of this account that holds the name now (it registered after ours was
            # wiped or pruned: a regular file of ours, another id, its socket live or written within the
            # minute) keeps it: this connection yields, as a newcomer would get "taken". Anything else
            # (garbage, a symlink, another user's file, nothing) is replaced by our registration.
            oid=$(printf "%s" "$cur" | sed -n "s/.*\\"id\\":\\"\\([^\\"]*\\)\\".*/\\1/p")
            osock=$(printf "%s" "$cur" | sed -n "s/.*\\"socket\\":\\"\\([^\\"]*\\)\\".*/\\1/p")
            if [ -n "$oid" ] && [ "$oid" != "$id" ] && [ -O "$file" ] && { { [ -n "$osock" ] && [ -S "$osock" ]; } || [ -n "$(find "$file" -mmin -1 2>/dev/null)" ]; }; then
              echo taken; exit 4
            fi
            mkdir -p "$dir" 2>/dev/null; write "$last" || { echo "error: cannot rewrite $file"; exit 7; }; echo restored ;;
        esac
      fi
      echo alive ;;
    *) write "$line" || { echo "error: cannot write $file"; exit 7; }; last=$line; echo ok ;;
  esac
done
`;

export const REMOTE_EXIT = { registryUnwritable: 3, nameTaken: 4, socketMissing: 5, refused: 6, lost: 7 } as const;

/** The remote command line for ssh: `sh -c '<script>' opencode-relay DIR NAME ID NONCE SOCK`. */
export function remoteCommand(args: { dir: string; name: string; id: string; nonce: string; socket?: string }): string {
  return ["sh", "-c", SCRIPT, "opencode-relay", args.dir, args.name, args.id, args.nonce, args.socket ?? ""].map(shellQuote).join(" ");
}

export { SCRIPT as REMOTE_SCRIPT };

/** Whether `word` travels through shellQuote unquoted, i.e. survives plain word splitting unchanged. */
export function isPlainWord(word: string): boolean {
  return word !== "" && shellQuote(word) === word;
}

/**
 * The forced command of a hardened relay (`opencode-connected relay-setup`): a POSIX-sh file that sshd
 * runs for every session of a tunnel key, whatever the client asked for. The client's command reaches it
 * only as $SSH_ORIGINAL_COMMAND, which it never runs or evaluates: it splits it into words (no globbing),
 * takes the launcher's five arguments from the end (`… opencode-relay DIR NAME ID NONCE SOCK`), checks
 * them strictly against `registryDir` (baked in), and then runs its own copy of SCRIPT with them. Anything
 * else: `error: refused: …`, exit 6.
 *
 * The middle of the launcher's command (the quoted SCRIPT, which contains spaces) is deliberately not
 * parsed or compared: a launcher of another version still connects, and nothing of it is run anyway.
 * Words shellQuote would quote cannot be read back by splitting, so the registry directory must be a plain
 * word (checked here) and so must names (the name rule below admits only plain characters). The one quoted
 * word the launcher sends is an empty SOCK (tcp forwards), as `''`.
 */
export function forcedCommandScript(registryDir: string): string {
  if (!registryDir.startsWith("/") || !isPlainWord(registryDir) || registryDir.endsWith("/") || registryDir.includes("//") || /(^|\/)\.\.?(\/|$)/.test(registryDir)) {
    throw new Error(`the registry directory must be a normalized absolute path of letters, digits and _@%+=:,./- (got ${registryDir})`);
  }
  const prelude = `#!/bin/sh
# opencode-relay: forced command for tunnel keys. Generated by \`opencode-connected relay-setup\`;
# regenerate it rather than editing it. It never runs what the client asked for: it reads the launcher's
# arguments from the end of $SSH_ORIGINAL_COMMAND, checks them, and runs its own registration script.
registry=${registryDir}
LC_ALL=C; export LC_ALL
refuse() { printf "error: refused: %s\\n" "$1"; exit ${REMOTE_EXIT.refused}; }
only="this relay accepts only opencode-connected tunnels"
# Split into words without globbing; never eval. The launcher's own arguments are the last six words.
set -f
IFS=" \t
"
set -- \${SSH_ORIGINAL_COMMAND-}
{ [ $# -ge 8 ] && [ "$1" = sh ] && [ "$2" = -c ]; } || refuse "$only"
shift $(($# - 6))
[ "$1" = opencode-relay ] || refuse "$only (INSTANCE_NAME and RELAY_REGISTRY_DIR may only contain letters, digits and . _ -)"
dir=$2; name=$3; id=$4; nonce=$5; sock=$6
# shellQuote sends an empty SOCK (tcp forward) as two single quotes.
[ "$sock" = "''" ] && sock=
[ "$dir" = "$registry" ] || refuse "the registry here is $registry, not $dir: set RELAY_REGISTRY_DIR=$registry"
case $name in
  ""|[!A-Za-z0-9]*|*[!A-Za-z0-9._-]*) refuse "bad instance name $name: only letters, digits and . _ -, starting with a letter or digit (set INSTANCE_NAME)" ;;
esac
[ \${#name} -le 128 ] || refuse "the instance name is longer than 128 characters"
case $id in ""|*[!A-Za-z0-9-]*) refuse "bad launcher id $id" ;; esac
[ \${#id} -le 64 ] || refuse "bad launcher id $id"
case $nonce in *[!0-9a-f]*) refuse "bad nonce $nonce" ;; esac
[ \${#nonce} -eq 16 ] || refuse "bad nonce $nonce"
if [ -n "$sock" ]; then
  [ "$sock" = "$registry/$(printf "%.40s" "$name")-$nonce.sock" ] || refuse "bad socket path $sock"
fi
set +f
unset IFS
set -- "$registry" "$name" "$id" "$nonce" "$sock"
# The registration script, exactly as the launcher sends it (src/launcher/remote-script.ts).`;
  return `${prelude}${SCRIPT}`;
}

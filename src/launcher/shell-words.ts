/**
 * Shell word splitting and quoting, for RELAY_SSH_CMD (users write it as they would type it, e.g.
 * `gcloud compute ssh relay --zone=europe-west1-b --`) and for the remote command we send to the relay.
 */

export class ShellSyntaxError extends Error {
  override name = "ShellSyntaxError";
}

/** Splits like a POSIX shell would: quotes, backslashes, whitespace. No expansions. */
export function splitShellWords(input: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!;
    if (c === "'") {
      const end = input.indexOf("'", i + 1);
      if (end < 0) throw new ShellSyntaxError(`unterminated single quote in: ${input}`);
      word += input.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === '"') {
      inWord = true;
      for (i++; ; i++) {
        if (i >= input.length) throw new ShellSyntaxError(`unterminated double quote in: ${input}`);
        const d = input[i]!;
        if (d === '"') break;
        if (d === "\\" && i + 1 < input.length && '"\\$`\n'.includes(input[i + 1]!)) word += input[++i];
        else word += d;
      }
    } else if (c === "\\") {
      if (i + 1 < input.length) word += input[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

// Scans a test run's logs for the canary secrets of test/helpers/secrets.ts:
//   node scripts/check-secrets.ts [dir...]     (default: $STEVEDORE_TEST_LOG_DIR)
// Every file under the directories is searched for every canary, in its plain,
// URL-encoded, JSON-escaped, base64 and base64url forms (base64 also inside a
// longer base64 text, such as an encoded auth header). Prints the file and line
// of each hit, the canary itself replaced, and exits 1 on a hit, 0 when clean,
// 2 when a directory cannot be read. scripts/with-test-env.ts runs it after the tests.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CANARIES } from '../test/helpers/secrets.ts';

export interface SecretForm {
  /** plain, url-encoded, json, base64, base64url */
  form: string;
  text: string;
}

export interface SecretHit {
  file: string;
  /** 1-based. */
  line: number;
  /** The canary's name (CANARIES key). */
  secret: string;
  form: string;
  /** The line, each canary form in it replaced with <canary NAME>, cut to 300 characters. */
  excerpt: string;
}

/**
 * The texts a secret can take in a log. For base64 the secret may sit at any of the
 * three byte offsets of a longer encoded text: each offset gives the characters that
 * depend on the secret's bytes alone.
 */
export function secretForms(secret: string): SecretForm[] {
  const forms: SecretForm[] = [
    { form: 'plain', text: secret },
    { form: 'url-encoded', text: encodeURIComponent(secret) },
    { form: 'json', text: JSON.stringify(secret).slice(1, -1) },
  ];
  const bytes = Buffer.from(secret, 'utf8');
  for (let offset = 0; offset < 3; offset++) {
    const encoded = Buffer.concat([Buffer.alloc(offset), bytes]).toString('base64');
    const core = encoded.slice(4 * Math.ceil(offset / 3), 4 * Math.floor((offset + bytes.length) / 3));
    if (core.length < 16) continue;
    forms.push({ form: 'base64', text: core });
    forms.push({ form: 'base64url', text: core.replace(/\+/g, '-').replace(/\//g, '_') });
  }
  const seen = new Set<string>();
  return forms.filter((f) => !seen.has(f.text) && seen.add(f.text));
}

function* filesUnder(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* filesUnder(full);
    else if (entry.isFile()) yield full;
  }
}

/** Every occurrence of every canary form in every file under `dir`. */
export function findSecrets(dir: string, canaries: Readonly<Record<string, string>> = CANARIES): SecretHit[] {
  const needles = Object.entries(canaries).flatMap(([name, value]) => secretForms(value).map((f) => ({ name, ...f, bytes: Buffer.from(f.text) })));
  const hits: SecretHit[] = [];
  for (const file of filesUnder(dir)) {
    const data = readFileSync(file);
    for (const needle of needles) {
      for (let at = data.indexOf(needle.bytes); at !== -1; at = data.indexOf(needle.bytes, at + needle.bytes.length)) {
        let line = 1;
        for (let i = data.indexOf(10); i !== -1 && i < at; i = data.indexOf(10, i + 1)) line++;
        const start = data.lastIndexOf(10, at) + 1;
        const endAt = data.indexOf(10, at);
        let text = data.subarray(start, endAt === -1 ? data.length : endAt).toString('utf8');
        for (const n of needles) text = text.split(n.text).join(`<canary ${n.name}>`);
        hits.push({ file, line, secret: needle.name, form: needle.form, excerpt: text.length > 300 ? `${text.slice(0, 300)}...` : text });
      }
    }
  }
  return hits.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line);
}

export function formatHit(hit: SecretHit): string {
  return `${hit.file}:${hit.line}: the ${hit.secret} (${hit.form}) is in a log: ${hit.excerpt}`;
}

/** Scans the directories; prints the hits on `out`. Returns the exit code: 0 clean, 1 hits, 2 unreadable. */
export function checkSecrets(dirs: string[], out: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): number {
  let hits: SecretHit[] = [];
  let files = 0;
  for (const dir of dirs) {
    try {
      files += [...filesUnder(dir)].length;
      hits = hits.concat(findSecrets(dir));
    } catch (err) {
      out(`check-secrets: cannot read ${dir}: ${err instanceof Error ? err.message : String(err)}`);
      return 2;
    }
  }
  if (hits.length === 0) {
    out(`check-secrets: no canary secret in ${files} log file(s) under ${dirs.join(', ')}`);
    return 0;
  }
  for (const hit of hits) out(formatHit(hit));
  out(`check-secrets: ${hits.length} canary secret(s) found in the logs: a secret reached a log; find what logged it (file and line above) and redact it (src/util/logger.ts)`);
  return 1;
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const dirs = args.length > 0 ? args : [process.env.STEVEDORE_TEST_LOG_DIR ?? ''].filter((d) => d !== '');
  if (dirs.length === 0) {
    process.stderr.write('usage: node scripts/check-secrets.ts <dir...> (or set STEVEDORE_TEST_LOG_DIR)\n');
    process.exitCode = 2;
  } else {
    process.exitCode = checkSecrets(dirs);
  }
}

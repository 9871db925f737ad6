import t from 'tap';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { issueJoinToken, newJoinSecret, parseJoinSecret, readJoinSecret, verifyJoinToken } from '../../src/security/join-token.ts';
import { CANARY_JOIN_TOKEN } from '../helpers/secrets.ts';

const secret = Buffer.from(CANARY_JOIN_TOKEN);
const other = Buffer.from(newJoinSecret());

void t.test('a token is verified with the secret alone and names its node', (t) => {
  const token = issueJoinToken(secret, 'node-0123456789ab');
  t.match(token, /^sdj1\.node-0123456789ab\.[A-Za-z0-9_-]{43}$/);
  t.not(token.includes(CANARY_JOIN_TOKEN), true, 'the secret is not in the token');
  t.same(verifyJoinToken(secret, token), { ok: true, nodeId: 'node-0123456789ab' });
  t.equal(issueJoinToken(secret, 'node-0123456789ab'), token, 'the same node always gets the same token (nothing to store)');
  t.not(issueJoinToken(secret, 'node-0123456789ac'), token, 'each node its own');
  t.end();
});

void t.test('wrong, forged, malformed and missing tokens are refused with a reason that never holds the token', (t) => {
  const token = issueJoinToken(secret, 'node-0123456789ab');
  const forgedMac = `${token.slice(0, -2)}${token.endsWith('AA') ? 'BB' : 'AA'}`;
  const renamed = token.replace('node-0123456789ab', 'node-0123456789ac');
  const cases: [string, string | undefined, RegExp][] = [
    ['missing', undefined, /no join token was sent/],
    ['empty', '', /no join token was sent/],
    ['another secret', issueJoinToken(other, 'node-0123456789ab'), /not valid for this coordinator.*certs token node-0123456789ab/],
    ['forged mac', forgedMac, /not valid for this coordinator/],
    ['mac of another node', renamed, /for node node-0123456789ac is not valid/],
    ['malformed', 'sdj1.node-0123456789ab', /malformed/],
    ['bad node id', 'sdj1.root.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', /malformed/],
    ['other version', token.replace(/^sdj1/, 'sdj2'), /malformed/],
  ];
  for (const [name, value, reason] of cases) {
    const check = verifyJoinToken(secret, value);
    t.equal(check.ok, false, `${name}: refused`);
    if (!check.ok) {
      t.match(check.reason, reason, `${name}: ${check.reason}`);
      if (value) t.notOk(check.reason.includes(value), `${name}: the reason does not quote the token`);
    }
  }
  t.end();
});

void t.test('join secrets: short ones refused, files read and trimmed, errors name the fix', (t) => {
  t.throws(() => parseJoinSecret('short', 'x'), { code: 'JOIN_TOKEN_INVALID', message: /5 bytes long; it must be at least 32: make one with `stevedore certs ca`/ });
  t.ok(newJoinSecret().length >= 43);
  const dir = t.testdir({ secret: `${CANARY_JOIN_TOKEN}\n` });
  t.same(readJoinSecret(path.join(dir, 'secret')), secret);
  t.throws(() => readJoinSecret(path.join(dir, 'missing')), { code: 'CONFIG_UNREADABLE', message: /cannot read the join secret .*missing \(ENOENT\): check the path given to --join-secret/ });
  writeFileSync(path.join(dir, 'short'), 'abc');
  let shortErr: unknown;
  try {
    readJoinSecret(path.join(dir, 'short'));
  } catch (err) {
    shortErr = err;
  }
  t.match(shortErr, { code: 'JOIN_TOKEN_INVALID' });
  t.notOk((shortErr as Error).message.includes('abc'), 'the secret is not in the message');
  t.throws(() => issueJoinToken(secret, 'Node A'), { code: 'JOIN_TOKEN_INVALID' });
  t.end();
});

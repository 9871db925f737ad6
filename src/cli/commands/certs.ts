// `stevedore certs`: a development CA, the coordinator's, nodes' and
// operators' certificates, and join tokens, so that TLS is the easy path.
// docs/operations.md ("Certificates and join tokens") walks through them.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { StevedoreError } from '../../util/errors.ts';
import { createFileAtomic, writeFileAtomic } from '../../util/atomic-file.ts';
import type { IssuedCertificate, IssueOptions } from '../../security/certs.ts';
import { JOIN_SECRET_FILE, issueJoinToken, readJoinSecret } from '../../security/join-token.ts';
import { defaultOperatorTlsDir } from '../../security/tls.ts';
import { printJson, UsageError } from '../output.ts';

interface Common {
  ca?: string;
  out?: string;
  days?: string;
  force?: boolean;
  json?: boolean;
}

function days(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 36_500) throw new UsageError(`--days must be a whole number of days from 1 to 36500, not "${value}"`);
  return n;
}

function need(value: string | undefined, flag: string, example: string): string {
  if (value === undefined || value.trim() === '') throw new UsageError(`${flag} is required, for example ${example}`);
  return value;
}

function report(flags: Common, what: string, issued: IssuedCertificate, extra: Record<string, string> = {}): void {
  if (flags.json) {
    printJson({ identity: issued.uri, cert: issued.cert, key: issued.key, ca: issued.ca, notAfter: issued.notAfter.toISOString(), ...extra });
    return;
  }
  const lines = [
    `${what} ${issued.uri}, valid until ${issued.notAfter.toISOString().slice(0, 10)}`,
    `  certificate ${issued.cert}`,
    `  key         ${issued.key} (mode 0600)`,
    `  CA          ${issued.ca}`,
    ...Object.entries(extra).map(([k, v]) => `  ${k.padEnd(11)} ${v}`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** The join secret: --join-secret FILE, else the CA directory's. */
function joinSecretFile(flags: { joinSecret?: string; ca?: string }): string {
  if (flags.joinSecret) return flags.joinSecret;
  if (flags.ca) return path.join(flags.ca, JOIN_SECRET_FILE);
  throw new UsageError('give --ca DIR (its join-secret is used) or --join-secret FILE');
}

// Loaded on use: the X.509 library is for these commands only.
async function issueCertificate(opts: IssueOptions): Promise<IssuedCertificate> {
  return (await import('../../security/certs.ts')).issueCertificate(opts);
}

export function registerCerts(program: Command): void {
  const certs = program
    .command('certs')
    .description('make a development CA, certificates for the coordinator, nodes and operators, and join tokens');

  certs
    .command('ca')
    .description('a new CA (ca.pem, ca-key.pem 0600) and join secret (join-secret 0600) in DIR')
    .requiredOption('--out <dir>', 'directory for the CA; keep ca-key.pem and join-secret secret')
    .option('--name <name>', 'the CA\'s common name', 'Stevedore development CA')
    .option('--days <n>', 'validity in days (default 3650)')
    .option('--force', 'replace an existing CA (every certificate it signed stops working)')
    .option('--json', 'print the files as JSON')
    .action(async (flags: Common & { name: string }) => {
      const out = need(flags.out, '--out', '--out /etc/stevedore/pki');
      const { createCa } = await import('../../security/certs.ts');
      const result = await createCa(out, { name: flags.name, ...(days(flags.days) !== undefined && { validityDays: days(flags.days)! }), force: flags.force ?? false });
      if (flags.json) {
        printJson({ cert: result.cert, key: result.key, joinSecret: result.joinSecret, joinSecretCreated: result.joinSecretCreated });
        return;
      }
      process.stdout.write(
        [
          `CA made in ${out}`,
          `  certificate ${result.cert} (give it to every coordinator, agent and operator)`,
          `  key         ${result.key} (mode 0600; keep it off the nodes)`,
          `  join secret ${result.joinSecret} (mode 0600; the coordinator's --join-secret${result.joinSecretCreated ? '' : ', kept as it was'})`,
          'Next: stevedore certs coordinator --ca DIR --host NAME[,IP...] --out DIR',
        ].join('\n') + '\n',
      );
    });

  certs
    .command('coordinator')
    .description('the coordinator\'s server certificate (coordinator.pem, coordinator-key.pem) with its names and addresses')
    .requiredOption('--ca <dir>', 'the CA directory (certs ca)')
    .requiredOption('--host <names>', 'comma-separated host names and IP addresses agents and operators dial, such as coord.example.com,10.0.0.5')
    .requiredOption('--out <dir>', 'directory for the files')
    .option('--days <n>', 'validity in days (default 365)')
    .option('--force', 'replace existing files')
    .option('--json', 'print the files as JSON')
    .action(async (flags: Common & { host: string }) => {
      const hosts = flags.host.split(',').map((h) => h.trim()).filter((h) => h !== '');
      if (hosts.length === 0) throw new UsageError('--host needs at least one host name or IP address, such as --host coord.example.com,10.0.0.5');
      const issued = await issueCertificate({
        caDir: need(flags.ca, '--ca', '--ca /etc/stevedore/pki'), kind: 'coordinator', name: hosts[0]!, hosts, outDir: need(flags.out, '--out', '--out /etc/stevedore/pki'),
        ...(days(flags.days) !== undefined && { validityDays: days(flags.days)! }), force: flags.force ?? false,
      });
      report(flags, 'coordinator certificate', issued, { hosts: hosts.join(', ') });
    });

  certs
    .command('node')
    .description('a node\'s client certificate (node.pem, node-key.pem) naming its node id, and its join token (join-token 0600)')
    .argument('[node-id]', 'node- and 12 hex digits; left out: a new id')
    .requiredOption('--ca <dir>', 'the CA directory (certs ca)')
    .requiredOption('--out <dir>', 'directory for the files, copied to the node (such as /etc/stevedore/pki)')
    .option('--join-secret <file>', 'join secret for the token (default: the CA directory\'s join-secret)')
    .option('--days <n>', 'validity in days (default 365)')
    .option('--force', 'replace existing files')
    .option('--json', 'print the files as JSON')
    .action(async (nodeIdArg: string | undefined, flags: Common & { joinSecret?: string }) => {
      const nodeId = nodeIdArg ?? `node-${randomBytes(6).toString('hex')}`;
      const caDir = need(flags.ca, '--ca', '--ca /etc/stevedore/pki');
      const outDir = need(flags.out, '--out', '--out ./node-tls');
      // The token first: a missing join secret fails before any file is written.
      const secretFile = joinSecretFile({ ...flags, ca: caDir });
      const token = issueJoinToken(readJoinSecret(secretFile), nodeId);
      const issued = await issueCertificate({ caDir, kind: 'node', name: nodeId, outDir, ...(days(flags.days) !== undefined && { validityDays: days(flags.days)! }), force: flags.force ?? false });
      const tokenFile = path.join(outDir, 'join-token');
      writeFileAtomic(tokenFile, `${token}\n`, 0o600);
      fs.chmodSync(tokenFile, 0o600);
      report(flags, 'node certificate', issued, { 'join token': `${tokenFile} (mode 0600)`, 'node id': nodeId });
    });

  certs
    .command('operator')
    .description('an operator\'s client certificate for the CLI (operator.pem, operator-key.pem)')
    .argument('<name>', 'who holds it, such as alice or ci-deploy')
    .requiredOption('--ca <dir>', 'the CA directory (certs ca)')
    .option('--out <dir>', `directory for the files (default ${defaultOperatorTlsDir()}, where the CLI looks; or set STEVEDORE_TLS_DIR)`)
    .option('--days <n>', 'validity in days (default 365)')
    .option('--force', 'replace existing files')
    .option('--json', 'print the files as JSON')
    .action(async (name: string, flags: Common) => {
      const issued = await issueCertificate({
        caDir: need(flags.ca, '--ca', '--ca /etc/stevedore/pki'), kind: 'operator', name, outDir: flags.out ?? defaultOperatorTlsDir(),
        ...(days(flags.days) !== undefined && { validityDays: days(flags.days)! }), force: flags.force ?? false,
      });
      report(flags, 'operator certificate', issued);
    });

  certs
    .command('token')
    .description('a node\'s join token: printed, or written to a file (0600)')
    .argument('<node-id>', 'the node id of its certificate')
    .option('--ca <dir>', 'the CA directory: its join-secret is used')
    .option('--join-secret <file>', 'the join secret (the coordinator\'s --join-secret)')
    .option('--new-secret', 'create the join secret file first when it does not exist')
    .option('--out <file>', 'write the token to this file (mode 0600) instead of printing it')
    .action((nodeId: string, flags: { ca?: string; joinSecret?: string; newSecret?: boolean; out?: string }) => {
      const secretFile = joinSecretFile(flags);
      if (flags.newSecret) {
        fs.mkdirSync(path.dirname(secretFile), { recursive: true, mode: 0o700 });
        createFileAtomic(secretFile, `${randomBytes(32).toString('base64url')}\n`, 0o600);
      }
      const token = issueJoinToken(readJoinSecret(secretFile), nodeId);
      if (flags.out) {
        if (fs.existsSync(flags.out) && fs.statSync(flags.out).isDirectory()) throw new StevedoreError('CONFIG_INVALID', `--out ${flags.out} is a directory: name the token file, such as ${path.join(flags.out, 'join-token')}`);
        writeFileAtomic(flags.out, `${token}\n`, 0o600);
        fs.chmodSync(flags.out, 0o600);
        process.stdout.write(`join token of ${nodeId} written to ${flags.out} (mode 0600)\n`);
      } else {
        process.stdout.write(`${token}\n`);
      }
    });
}

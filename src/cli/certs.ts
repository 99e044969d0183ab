// `customs certs init|renew|client`: makes the private CA and the certificates Customs serves
// HTTPS and mTLS with, in one folder. Exit codes: 0 done, 1 refused (files exist, CA missing or
// expired, I/O), 2 a usage error (unknown option, bad --hosts, --days or --name).

import { X509Certificate } from 'node:crypto'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import {
  DEFAULT_CA_DAYS,
  DEFAULT_CLIENT_DAYS,
  DEFAULT_SERVER_DAYS,
  MAX_CA_DAYS,
  MAX_SERVER_DAYS,
  certificateHosts,
  checkClientName,
  checkDays,
  createCa,
  day,
  exists,
  formatHosts,
  issueClientCert,
  issueServerCert,
  loadCa,
  parseHosts,
  pemCertificates,
  writeFiles,
} from '../tls/certs.js'
import type { Hosts, IssuedCert, LoadedCa } from '../tls/certs.js'
import { TlsError } from '../tls/errors.js'
import { MAX_SETTING_FILE_BYTES } from '../tls/files.js'
import { readTextBounded } from '../files.js'

export interface CertsIo {
  stdout: { write(text: string): unknown }
  stderr: { write(text: string): unknown }
}

/** The `certs` lines of `customs --help`. */
export const CERTS_USAGE = [
  '  customs certs init --hosts HOSTS --out DIR [--days N] [--ca-days N] [--force]',
  '                                    a CA and a server certificate for HOSTS, DNS names and',
  '                                    IP addresses: customs.internal,10.0.0.5',
  '  customs certs renew --out DIR [--hosts HOSTS] [--days N]',
  '                                    a new server certificate and key from the CA in DIR',
  '                                    (the same hosts as the current one unless --hosts)',
  '  customs certs client --name NAME --out DIR [--days N] [--force]',
  '                                    an mTLS client certificate DIR/NAME.crt and NAME.key',
  '',
].join('\n')

const USAGE = `usage:
${CERTS_USAGE}
init writes DIR/ca.crt, DIR/ca.key, DIR/server.crt (the certificate, then the CA) and
DIR/server.key, private keys with mode 0600. Validity in days: server and client certificates
${DEFAULT_SERVER_DAYS} (at most ${MAX_SERVER_DAYS}), the CA ${DEFAULT_CA_DAYS} (at most ${MAX_CA_DAYS}).
Exit codes: 0 done, 1 refused (files exist, CA missing or expired), 2 usage error.
See docs/tls.md.
`

/** A usage error: printed with the usage, exit 2. */
class UsageError extends Error {}

const FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  serverCert: 'server.crt',
  serverKey: 'server.key',
} as const

/**
 * Runs `customs certs <init|renew|client> ...` with `args` after `certs`, writing what it did to
 * io.stdout and any refusal, as one clear line, to io.stderr. Returns the exit code.
 */
export async function certsCommand(args: string[], io: CertsIo): Promise<number> {
  const [sub, ...rest] = args
  try {
    if (sub === 'init') return await init(rest, io)
    if (sub === 'renew') return await renew(rest, io)
    if (sub === 'client') return await client(rest, io)
    if (sub === 'help' || sub === '--help' || sub === '-h') {
      io.stdout.write(USAGE)
      return 0
    }
    throw new UsageError(
      sub === undefined ? 'missing subcommand' : `unknown subcommand ${JSON.stringify(sub)}`
    )
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`customs certs: ${err.message}\n${USAGE}`)
      return 2
    }
    if (err instanceof TlsError) {
      io.stderr.write(`customs certs: ${err.message}\n`)
      const usage = ['HOSTS_INVALID', 'NAME_INVALID', 'DAYS_INVALID'].includes(err.code)
      return usage ? 2 : 1
    }
    const code = (err as NodeJS.ErrnoException).code
    if (typeof code === 'string' && err instanceof Error) {
      // A filesystem refusal (EACCES, EROFS, ENOSPC): the message names the path.
      io.stderr.write(`customs certs: ${err.message}\n`)
      return 1
    }
    throw err
  }
}

// ---------------------------------------------------------------------------------------------
// Subcommands

async function init(args: string[], io: CertsIo): Promise<number> {
  const { values } = parse(() =>
    parseArgs({
      args,
      strict: true,
      options: {
        hosts: { type: 'string' },
        out: { type: 'string' },
        days: { type: 'string' },
        'ca-days': { type: 'string' },
        force: { type: 'boolean' },
      },
    })
  )
  const out = required(values.out, '--out DIR')
  const hosts = hostsOption(required(values.hosts, '--hosts HOSTS'))
  const days = daysOption(values.days, '--days', DEFAULT_SERVER_DAYS, MAX_SERVER_DAYS)
  const caDays = daysOption(values['ca-days'], '--ca-days', DEFAULT_CA_DAYS, MAX_CA_DAYS)
  const force = values.force === true
  if (!force) {
    for (const name of Object.values(FILES)) {
      const path = resolve(out, name)
      if (!(await exists(path))) continue
      const advice = name.startsWith('ca.')
        ? 'a CA is there already. For a new server certificate from it use ' +
          `\`customs certs renew --out ${out}\`; ` +
          '--force replaces the CA too, and every client must then trust the new ca.crt'
        : 'use --force to replace it'
      throw new TlsError('FILE_EXISTS', `${path} already exists: ${advice}`)
    }
  }
  const ca = await createCa({ days: caDays })
  const loaded = loadCa(ca)
  const server = await issueServerCert(loaded, hosts, { days })
  const written = await writeFiles(
    out,
    [
      { name: FILES.caKey, contents: ca.keyPem, secret: true },
      { name: FILES.caCert, contents: ca.certPem, secret: false },
      { name: FILES.serverKey, contents: server.keyPem, secret: true },
      { name: FILES.serverCert, contents: server.chainPem, secret: false },
    ],
    { replace: force }
  )
  const caInfo = new X509Certificate(ca.certPem)
  io.stdout.write(
    wrote(written) +
      `CA: ${commonName(caInfo)}, valid until ${day(loaded.notAfter)}, ` +
      `sha256 ${caInfo.fingerprint256}\n`
  )
  reportServer(io, server, hosts, out)
  io.stdout.write(
    `Keep ${resolve(out, FILES.caKey)} away from the Customs hosts: ` +
      'Customs needs only server.crt and ' +
      'server.key; clients need ca.crt (docs/tls.md).\n'
  )
  return 0
}

async function renew(args: string[], io: CertsIo): Promise<number> {
  const { values } = parse(() =>
    parseArgs({
      args,
      strict: true,
      options: { out: { type: 'string' }, hosts: { type: 'string' }, days: { type: 'string' } },
    })
  )
  const out = required(values.out, '--out DIR')
  const given = values.hosts === undefined ? undefined : hostsOption(values.hosts)
  const days = daysOption(values.days, '--days', DEFAULT_SERVER_DAYS, MAX_SERVER_DAYS)
  const ca = await readCa(out)
  let hosts = given
  if (hosts === undefined) {
    const current = resolve(out, FILES.serverCert)
    const pem = await readIfExists(current)
    const [leaf] = pemCertificates(pem ?? '')
    if (leaf === undefined) {
      throw new TlsError(
        'CERT_MISSING',
        `no certificate in ${current} to take the hosts from: pass --hosts HOSTS`
      )
    }
    hosts = hostsOf(leaf, current)
  }
  const server = await issueServerCert(ca, hosts, { days })
  // Key first: a server reloading in between finds a mismatch and keeps its old pair.
  const written = await writeFiles(
    out,
    [
      { name: FILES.serverKey, contents: server.keyPem, secret: true },
      { name: FILES.serverCert, contents: server.chainPem, secret: false },
    ],
    { replace: true }
  )
  io.stdout.write(wrote(written))
  reportServer(io, server, hosts, out)
  io.stdout.write('A running Customs picks them up on SIGHUP or restart.\n')
  return 0
}

async function client(args: string[], io: CertsIo): Promise<number> {
  const { values } = parse(() =>
    parseArgs({
      args,
      strict: true,
      options: {
        name: { type: 'string' },
        out: { type: 'string' },
        days: { type: 'string' },
        force: { type: 'boolean' },
      },
    })
  )
  const name = required(values.name, '--name NAME')
  const out = required(values.out, '--out DIR')
  checkClientName(name)
  const days = daysOption(values.days, '--days', DEFAULT_CLIENT_DAYS, MAX_SERVER_DAYS)
  const ca = await readCa(out)
  const issued = await issueClientCert(ca, name, { days })
  const files = [
    { name: `${name}.key`, contents: issued.keyPem, secret: true },
    { name: `${name}.crt`, contents: issued.certPem, secret: false },
  ]
  const written = await writeFiles(out, files, { replace: values.force === true }).catch(
    (err: unknown) => {
      if (err instanceof TlsError && err.code === 'FILE_EXISTS') {
        throw new TlsError('FILE_EXISTS', `${err.message}: use --force to replace it`)
      }
      throw err
    }
  )
  io.stdout.write(
    wrote(written) +
      `client ${name}: valid until ${day(issued.notAfter)}` +
      `${issued.cappedByCa ? ' (when the CA expires)' : ''}\n` +
      'For Docker, copy them to /etc/docker/certs.d/HOST:PORT/client.cert and client.key ' +
      '(docs/tls.md).\n'
  )
  return 0
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** Runs node:util's parseArgs, whose messages name the option and are fit to print. */
function parse<T>(run: () => T): T {
  try {
    return run()
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

function required(value: string | undefined, option: string): string {
  if (value === undefined) throw new UsageError(`${option} is required`)
  return value
}

function hostsOption(text: string): Hosts {
  try {
    return parseHosts(text)
  } catch (err) {
    if (err instanceof TlsError) throw new TlsError(err.code, `--hosts: ${err.message}`)
    throw err
  }
}

function daysOption(
  text: string | undefined,
  option: string,
  fallback: number,
  max: number
): number {
  if (text === undefined) return fallback
  if (!/^\d+$/.test(text)) {
    throw new TlsError(
      'DAYS_INVALID',
      `${option} must be a whole number of days from 1 to ${max}, got ${JSON.stringify(text)}`
    )
  }
  try {
    return checkDays(Number(text), max)
  } catch {
    throw new TlsError(
      'DAYS_INVALID',
      `${option} must be a whole number of days from 1 to ${max}, got ${text}`
    )
  }
}

async function readCa(out: string): Promise<LoadedCa> {
  const certPath = resolve(out, FILES.caCert)
  const keyPath = resolve(out, FILES.caKey)
  const certPem = await readIfExists(certPath)
  const keyPem = await readIfExists(keyPath)
  if (certPem === undefined || keyPem === undefined) {
    const missing = certPem === undefined ? certPath : keyPath
    throw new TlsError(
      'CA_MISSING',
      `no CA: ${missing} does not exist. ` +
        `Make one with \`customs certs init --hosts HOSTS --out ${out}\``
    )
  }
  try {
    return loadCa({ certPem, keyPem }, { certLabel: certPath, keyLabel: keyPath })
  } catch (err) {
    if (err instanceof TlsError && err.code === 'CA_EXPIRED') {
      throw new TlsError(
        'CA_EXPIRED',
        `${err.message}: no certificate it signs would be accepted. Make a new CA with ` +
          `\`customs certs init --force --hosts HOSTS --out ${out}\`, ` +
          'then trust the new ca.crt on every client'
      )
    }
    throw err
  }
}

/** The hosts of the current certificate, to keep them; a clear refusal when there are none. */
function hostsOf(certPem: string, path: string): Hosts {
  let hosts: Hosts
  try {
    hosts = certificateHosts(certPem)
  } catch (err) {
    if (!(err instanceof TlsError)) throw err
    throw new TlsError(err.code, `${path}: ${err.message}; pass --hosts HOSTS`)
  }
  if (hosts.dns.length + hosts.ips.length === 0) {
    throw new TlsError(
      'CERT_INVALID',
      `${path} names no hosts (no subjectAltName): pass --hosts HOSTS`
    )
  }
  return hosts
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readTextBounded(path, MAX_SETTING_FILE_BYTES)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** One line per file, private keys marked, so the operator sees what to protect. */
function wrote(paths: readonly string[]): string {
  return paths
    .map((p) => `wrote ${p}${p.endsWith('.key') ? ' (private key, mode 0600)' : ''}\n`)
    .join('')
}

function reportServer(io: CertsIo, server: IssuedCert, hosts: Hosts, out: string): void {
  io.stdout.write(
    `server certificate for ${formatHosts(hosts)}: valid until ${day(server.notAfter)}\n` +
      (server.cappedByCa
        ? "warning: cut short to the CA's own end; " +
          `renew the CA (certs init --force) before ${day(server.notAfter)}\n`
        : '') +
      `Serve HTTPS with:\n  tls:\n    cert: ${resolve(out, FILES.serverCert)}\n` +
      `    key: ${resolve(out, FILES.serverKey)}\n`
  )
}

function commonName(cert: X509Certificate): string {
  return /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? cert.subject
}

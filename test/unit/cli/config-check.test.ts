// `customs config check` on the files a configuration names: the listener's TLS files, upstreams'
// TLS files and trust keys and roots are read from the configuration's folder by serve's own
// loaders, each unusable one reported as one line naming the setting and the file, exit 1; a
// configuration whose files are all good passes without connecting to anything.

import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { configCheck, type CheckIo } from '../../../src/cli/config-check.js'
import { publicTrustedRootJson } from '../../../src/verify/trust.js'
import { makeTestPki, type TestPki } from '../../helpers/tls-pki.js'

let dir: string
let pki: TestPki

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'customs-config-check-'))
  // The files sit beside the configuration, which names them by relative paths.
  pki = await makeTestPki(dir)
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  await writeFile(join(dir, 'release.pub'), publicKey.export({ type: 'spki', format: 'pem' }))
  await writeFile(join(dir, 'trusted_root.json'), publicTrustedRootJson())
  await writeFile(join(dir, 'not-pem.txt'), 'hello\n')
  await writeFile(join(dir, 'not-json.txt'), '{ nope\n')
})
after(() => rm(dir, { recursive: true, force: true }))

/** A configuration using every kind of file, with `change` applied to its defaults. */
function configText(change: Partial<Record<'serverCert' | 'serverKey' | 'clientCa' | 'upstreamCa' | 'upstreamCert' | 'upstreamKey' | 'key' | 'root', string>> = {}): string {
  const f = {
    serverCert: 'server.pem',
    serverKey: 'server.key',
    clientCa: 'ca.pem',
    upstreamCa: 'ca.pem',
    upstreamCert: 'client.pem',
    upstreamKey: 'client.key',
    key: 'release.pub',
    root: 'trusted_root.json',
    ...change,
  }
  return [
    `tls: { cert: ${f.serverCert}, key: ${f.serverKey}, clientCa: ${f.clientCa} }`,
    // Redis nowhere to be found: the check must not try it.
    'state: { backend: redis, redis: { url: "redis://127.0.0.1:9" } }',
    'upstreams:',
    '  - name: public.io',
    '    url: https://public.io',
    '    default: true',
    '  - name: internal.corp',
    '    url: https://registry.internal.corp',
    `    tls: { ca: ${f.upstreamCa}, cert: ${f.upstreamCert}, key: ${f.upstreamKey} }`,
    'trust:',
    '  roots:',
    `    - { name: corp, trustedRoot: ${f.root} }`,
    '  keys:',
    `    - { name: release, file: ${f.key} }`,
    '',
  ].join('\n')
}

/** Runs the check on `text` written beside the files; its exit code and what it printed. */
async function check(text: string): Promise<{ code: number; out: string; err: string }> {
  const file = join(dir, 'customs.yaml')
  await writeFile(file, text)
  let out = ''
  let err = ''
  const io: CheckIo = { stdout: { write: (t: string) => (out += t) }, stderr: { write: (t: string) => (err += t) } }
  const code = await configCheck(file, io)
  return { code, out, err }
}

/** The problem lines of a failed check, without its summary line. */
function problemLines(err: string): string[] {
  const lines = err.trimEnd().split('\n')
  assert.match(lines.at(-1) ?? '', /customs\.yaml: invalid configuration \(\d+ problems?\)$/)
  return lines.slice(0, -1)
}

describe('configCheck and the files a configuration names', () => {
  it('passes a configuration whose files are all usable, from the configuration’s folder, without connecting to Redis', async () => {
    const { code, out, err } = await check(configText())
    assert.equal(err, '')
    assert.equal(code, 0)
    assert.match(out, /: valid; .*state redis/)
  })

  const cases: Array<{ kind: string; change: Parameters<typeof configText>[0]; line: () => string | RegExp }> = [
    { kind: 'the listener’s certificate, unreadable', change: { serverCert: 'missing.pem' }, line: () => `tls.cert: cannot read ${join(dir, 'missing.pem')} (ENOENT)` },
    { kind: 'the listener’s key, not the certificate’s', change: { serverKey: 'client.key' }, line: () => `tls.key: ${pki.clientKeyFile} is not the key of the certificate in ${pki.serverCertFile}` },
    { kind: 'the listener’s client CA, not a CA', change: { clientCa: 'client.pem' }, line: () => `tls.clientCa: ${pki.clientCertFile} must hold one or more PEM CA certificates` },
    { kind: 'an upstream’s CA, not PEM', change: { upstreamCa: 'not-pem.txt' }, line: () => `upstreams[1].tls.ca: ${join(dir, 'not-pem.txt')} must hold one or more PEM CA certificates` },
    { kind: 'an upstream’s client certificate, unreadable', change: { upstreamCert: 'gone.pem' }, line: () => `upstreams[1].tls.cert: cannot read ${join(dir, 'gone.pem')} (ENOENT)` },
    { kind: 'an upstream’s key, not the certificate’s', change: { upstreamKey: 'server.key' }, line: () => `upstreams[1].tls.key: ${pki.serverKeyFile} is not the key of the certificate in ${pki.clientCertFile}` },
    { kind: 'a trust key, unreadable', change: { key: 'gone.pub' }, line: () => `trust.keys[0].file: cannot read ${join(dir, 'gone.pub')} (ENOENT)` },
    { kind: 'a trust key, not a public key', change: { key: 'not-pem.txt' }, line: () => `trust.keys[0].file: ${join(dir, 'not-pem.txt')} is not a PEM public key` },
    { kind: 'a trust root, unreadable', change: { root: 'gone.json' }, line: () => `trust.roots[0].trustedRoot: cannot read ${join(dir, 'gone.json')} (ENOENT)` },
    { kind: 'a trust root, not a trusted_root.json', change: { root: 'not-json.txt' }, line: () => `trust.roots[0].trustedRoot: ${join(dir, 'not-json.txt')} is not a valid trusted_root.json` },
  ]
  for (const { kind, change, line } of cases) {
    it(`exits 1 with one line naming the setting and the file: ${kind}`, async () => {
      const { code, out, err } = await check(configText(change))
      assert.equal(code, 1)
      assert.equal(out, '')
      assert.deepEqual(problemLines(err), [line()])
    })
  }

  it('reports every unusable file, one line each, not only the first', async () => {
    const { code, err } = await check(configText({ serverKey: 'client.key', upstreamCert: 'gone.pem', key: 'not-pem.txt', root: 'gone.json' }))
    assert.equal(code, 1)
    const lines = problemLines(err)
    assert.deepEqual(
      lines.map((l) => l.slice(0, l.indexOf(':'))),
      ['tls.key', 'upstreams[1].tls.cert', 'trust.keys[0].file', 'trust.roots[0].trustedRoot']
    )
    assert.match(err, /\(4 problems\)\n$/)
  })

  it('reports both parts of one TLS setting: the listener’s certificate and its client CA, an upstream’s CA and its client certificate', async () => {
    const { code, err } = await check(configText({ serverCert: 'missing.pem', clientCa: 'client.pem', upstreamCa: 'not-pem.txt', upstreamKey: 'server.key' }))
    assert.equal(code, 1)
    assert.deepEqual(problemLines(err), [
      `tls.cert: cannot read ${join(dir, 'missing.pem')} (ENOENT)`,
      `tls.clientCa: ${pki.clientCertFile} must hold one or more PEM CA certificates`,
      `upstreams[1].tls.ca: ${join(dir, 'not-pem.txt')} must hold one or more PEM CA certificates`,
      `upstreams[1].tls.key: ${pki.serverKeyFile} is not the key of the certificate in ${pki.clientCertFile}`,
    ])
    assert.match(err, /\(4 problems\)\n$/)
  })

})

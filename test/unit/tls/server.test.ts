// The HTTPS listener's start-up checks (every failure a TlsError naming the setting and the file),
// the `tls` configuration section, and the client identity read for the access log.

import assert from 'node:assert/strict'
import { createPrivateKey } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ConfigError, parseConfig } from '../../../src/config/load.js'
import {
  createCa,
  issueClientCert,
  issueServerCert,
  loadCa,
  parseHosts,
} from '../../../src/tls/certs.js'
import type { CertAndKey, IssuedCert } from '../../../src/tls/certs.js'
import { TlsError } from '../../../src/tls/errors.js'
import type { TlsErrorCode } from '../../../src/tls/errors.js'
import { clientIdentity } from '../../../src/tls/identity.js'
import { EXPIRY_WARNING_DAYS, loadTlsMaterial } from '../../../src/tls/server.js'
import type { TlsSettings } from '../../../src/tls/server.js'

const DAY_MS = 86_400_000

let dir: string
let ca: CertAndKey
let server: IssuedCert
let client: IssuedCert

async function loadError(settings: TlsSettings, code: TlsErrorCode, now?: Date): Promise<TlsError> {
  try {
    await loadTlsMaterial(settings, { base: dir, ...(now !== undefined ? { now } : {}) })
  } catch (err) {
    assert.ok(err instanceof TlsError, `expected a TlsError, got ${String(err)}`)
    assert.equal(err.code, code, err.message)
    return err
  }
  assert.fail(`expected TlsError ${code}`)
}

const plain: TlsSettings = { cert: 'server.crt', key: 'server.key', requireClientCert: false }

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'customs-tls-'))
  ca = await createCa()
  const loaded = loadCa(ca)
  server = await issueServerCert(loaded, parseHosts('localhost,127.0.0.1'))
  client = await issueClientCert(loaded, 'node-1')
  const other = await issueServerCert(loaded, parseHosts('other.io'))
  await writeFile(join(dir, 'server.crt'), server.chainPem)
  await writeFile(join(dir, 'server.key'), server.keyPem)
  await writeFile(join(dir, 'ca.crt'), ca.certPem)
  await writeFile(join(dir, 'other.key'), other.keyPem)
  await writeFile(join(dir, 'client.crt'), client.certPem)
  await writeFile(join(dir, 'garbage.pem'), 'not a certificate\n')
  await writeFile(
    join(dir, 'encrypted.key'),
    createPrivateKey(server.keyPem).export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'secret',
    })
  )
})

after(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('loadTlsMaterial', () => {
  describe('when the certificate and key are good', () => {
    it('returns https options with the chain and key, and no client CA', async () => {
      const material = await loadTlsMaterial(plain, { base: dir })
      assert.equal(material.serverOptions.cert, server.chainPem)
      assert.equal(material.serverOptions.key, server.keyPem)
      assert.equal(material.serverOptions.ca, undefined)
      assert.deepEqual(
        [material.serverOptions.requestCert, material.serverOptions.rejectUnauthorized],
        [false, false]
      )
      assert.equal(material.certFile, join(dir, 'server.crt'))
      assert.equal(material.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1')
      assert.equal(material.expiresSoon, false)
    })
    it('returns absolute paths as they are, whatever the base folder', async () => {
      const absolute = { ...plain, cert: join(dir, 'server.crt'), key: join(dir, 'server.key') }
      const material = await loadTlsMaterial(absolute, { base: '/nonexistent' })
      assert.deepEqual([material.certFile, material.keyFile], [absolute.cert, absolute.key])
    })
  })

  describe(`when the certificate expires within ${EXPIRY_WARNING_DAYS} days`, () => {
    it('returns it, marked as expiring soon', async () => {
      const now = new Date(server.notAfter.getTime() - 10 * DAY_MS)
      assert.equal((await loadTlsMaterial(plain, { base: dir, now })).expiresSoon, true)
    })
  })

  describe('when a file cannot be read', () => {
    it('refuses with FILE_UNREADABLE naming the setting, the file and the reason', async () => {
      const err = await loadError({ ...plain, cert: 'missing.crt' }, 'FILE_UNREADABLE')
      assert.equal(err.message, `tls.cert: cannot read ${join(dir, 'missing.crt')} (ENOENT)`)
      const key = await loadError({ ...plain, key: 'missing.key' }, 'FILE_UNREADABLE')
      assert.match(key.message, /^tls\.key: cannot read .*missing\.key \(ENOENT\)$/)
      const clientCa = await loadError({ ...plain, clientCa: 'nope.crt' }, 'FILE_UNREADABLE')
      assert.match(clientCa.message, /^tls\.clientCa: cannot read/)
    })
  })

  describe('when the key is not the certificate’s', () => {
    it('refuses with KEY_MISMATCH naming both files', async () => {
      const err = await loadError({ ...plain, key: 'other.key' }, 'KEY_MISMATCH')
      assert.equal(
        err.message,
        `tls.key: ${join(dir, 'other.key')} is not the key of the certificate in ` +
          join(dir, 'server.crt')
      )
    })
  })

  describe('when the files are not PEM', () => {
    it('refuses a certificate file without a certificate with CERT_INVALID', async () => {
      const err = await loadError({ ...plain, cert: 'garbage.pem' }, 'CERT_INVALID')
      assert.match(err.message, /^tls\.cert: .*garbage\.pem holds no PEM certificate$/)
    })
    it('refuses a key that does not parse, or is encrypted, with KEY_INVALID', async () => {
      await loadError({ ...plain, key: 'garbage.pem' }, 'KEY_INVALID')
      const err = await loadError({ ...plain, key: 'encrypted.key' }, 'KEY_INVALID')
      assert.match(err.message, /encrypted\.key is not an unencrypted PEM private key/)
    })
  })

  describe('when the certificate has expired', () => {
    it('refuses with CERT_EXPIRED, the date and what to do', async () => {
      const now = new Date(server.notAfter.getTime() + DAY_MS)
      const err = await loadError(plain, 'CERT_EXPIRED', now)
      assert.match(
        err.message,
        /^tls\.cert: the certificate in .*server\.crt expired on \d{4}-\d\d-\d\d; renew it/
      )
    })
  })

  describe('when the certificate is not valid yet', () => {
    it('refuses with CERT_NOT_YET_VALID', async () => {
      await loadError(plain, 'CERT_NOT_YET_VALID', new Date(Date.now() - 2 * 3600_000))
    })
  })

  describe('when a client CA is given', () => {
    it('returns options that ask for a client certificate, optional by default', async () => {
      const material = await loadTlsMaterial({ ...plain, clientCa: 'ca.crt' }, { base: dir })
      assert.equal(material.serverOptions.ca, ca.certPem)
      assert.deepEqual(
        [material.serverOptions.requestCert, material.serverOptions.rejectUnauthorized],
        [true, false]
      )
    })
    it('returns options that refuse clients without one when required', async () => {
      const settings = { ...plain, clientCa: 'ca.crt', requireClientCert: true }
      const material = await loadTlsMaterial(settings, { base: dir })
      assert.deepEqual(
        [material.serverOptions.requestCert, material.serverOptions.rejectUnauthorized],
        [true, true]
      )
    })
    it('refuses a client CA file that holds no CA with CLIENT_CA_INVALID', async () => {
      await loadError({ ...plain, clientCa: 'client.crt' }, 'CLIENT_CA_INVALID')
      await loadError({ ...plain, clientCa: 'garbage.pem' }, 'CLIENT_CA_INVALID')
    })
  })

  describe('when a client certificate is required without a client CA', () => {
    it('refuses with CLIENT_CA_INVALID', async () => {
      await loadError({ ...plain, requireClientCert: true }, 'CLIENT_CA_INVALID')
    })
  })

  describe('when both the certificate and the client CA are unusable', () => {
    it('refuses with one error that names both, the first part’s code, one problem a line', async () => {
      const err = await loadError({ ...plain, key: 'other.key', clientCa: 'garbage.pem' }, 'KEY_MISMATCH')
      const problems = [
        `tls.key: ${join(dir, 'other.key')} is not the key of the certificate in ${join(dir, 'server.crt')}`,
        `tls.clientCa: ${join(dir, 'garbage.pem')} must hold one or more PEM CA certificates`,
      ]
      assert.deepEqual(err.problems, problems)
      assert.equal(err.message, problems.join('\n'))
    })
  })
})

describe('the tls configuration section', () => {
  describe('when absent', () => {
    it('returns no tls: plain HTTP', () => {
      assert.equal(parseConfig('').tls, undefined)
    })
  })
  describe('when given cert and key', () => {
    it('returns them, with client certificates not required', () => {
      const config = parseConfig('tls:\n  cert: certs/server.crt\n  key: certs/server.key\n')
      assert.deepEqual(config.tls, {
        cert: 'certs/server.crt',
        key: 'certs/server.key',
        requireClientCert: false,
      })
    })
    it('returns them from CUSTOMS_TLS_* variables too', () => {
      const env = {
        CUSTOMS_TLS_CERT: 'a.crt',
        CUSTOMS_TLS_KEY: 'a.key',
        CUSTOMS_TLS_CLIENTCA: 'ca.crt',
        CUSTOMS_TLS_REQUIRECLIENTCERT: 'true',
      }
      assert.deepEqual(parseConfig('', { env }).tls, {
        cert: 'a.crt',
        key: 'a.key',
        clientCa: 'ca.crt',
        requireClientCert: true,
      })
    })
  })
  describe('when invalid', () => {
    const issues = (text: string): string[] => {
      try {
        parseConfig(text, { file: 'customs.yaml' })
      } catch (err) {
        assert.ok(err instanceof ConfigError)
        return err.issues.map((i) => `${i.path}@${i.line}: ${i.message}`)
      }
      assert.fail('expected a ConfigError')
    }
    it('points at requireClientCert without clientCa', () => {
      const text = 'tls:\n  cert: a\n  key: b\n  requireClientCert: true\n'
      assert.deepEqual(issues(text), [
        'tls.requireClientCert@4: needs tls.clientCa, the CA that signs client certificates',
      ])
    })
    it('points at a missing key and an unknown one', () => {
      assert.deepEqual(issues('tls:\n  cert: a\n  keyFile: b\n'), [
        'tls.key@2: is required',
        'tls.keyFile@3: unknown key (expected one of cert, key, clientCa, requireClientCert)',
      ])
    })
  })
})

describe('clientIdentity', () => {
  describe('when there is no TLS connection', () => {
    it('returns undefined for missing bindings, plain objects and plain HTTP', () => {
      assert.equal(clientIdentity(undefined), undefined)
      assert.equal(clientIdentity({}), undefined)
      assert.equal(clientIdentity({ incoming: { socket: {} } }), undefined)
    })
  })
})

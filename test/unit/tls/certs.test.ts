// Issuing certificates: host parsing, the CA's and the leaves' extensions and validity, chains
// that node:crypto verifies, CA checks, and the writer's modes and refusals.

import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { chmod, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import forge from 'node-forge'
import {
  DEFAULT_SERVER_DAYS,
  KEY_BITS,
  certificateHosts,
  createCa,
  issueClientCert,
  issueServerCert,
  loadCa,
  parseHosts,
  pemCertificates,
  randomSerial,
  writeFiles,
} from '../../../src/tls/certs.js'
import type { CertAndKey, LoadedCa } from '../../../src/tls/certs.js'
import { TlsError } from '../../../src/tls/errors.js'
import type { TlsErrorCode } from '../../../src/tls/errors.js'

const DAY_MS = 86_400_000
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1'
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2'

/** The TlsError `fn` throws; fails the test when it throws nothing or something else. */
async function tlsError(fn: () => unknown, code: TlsErrorCode): Promise<TlsError> {
  try {
    await fn()
  } catch (err) {
    assert.ok(err instanceof TlsError, `expected a TlsError, got ${String(err)}`)
    assert.equal(err.code, code, err.message)
    return err
  }
  assert.fail(`expected TlsError ${code}`)
}

interface Extension {
  critical?: boolean
  cA?: boolean
  pathLenConstraint?: number
  keyCertSign?: boolean
  cRLSign?: boolean
  digitalSignature?: boolean
  keyEncipherment?: boolean
  subjectKeyIdentifier?: string
  value?: string
}

function extension(pem: string, name: string): Extension {
  const found: unknown = forge.pki.certificateFromPem(pem).getExtension(name)
  assert.ok(typeof found === 'object' && found !== null, `no ${name} extension`)
  return found as Extension
}

/** The keyIdentifier inside an authorityKeyIdentifier extension, as hex. */
function authorityKeyId(pem: string): string {
  const asn1 = forge.asn1.fromDer(extension(pem, 'authorityKeyIdentifier').value ?? '')
  const [first] = asn1.value as forge.asn1.Asn1[]
  assert.ok(first !== undefined)
  return forge.util.bytesToHex(first.value as string)
}

let ca: CertAndKey
let loaded: LoadedCa
let dir: string

before(async () => {
  ca = await createCa()
  loaded = loadCa(ca)
  dir = await mkdtemp(join(tmpdir(), 'customs-certs-'))
})

after(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('parseHosts', () => {
  describe('when given DNS names and IP addresses', () => {
    it('returns the names lower-cased and the addresses, each once', () => {
      assert.deepEqual(parseHosts('Customs.Internal,10.0.0.5,customs.internal,mirror'), {
        dns: ['customs.internal', 'mirror'],
        ips: ['10.0.0.5'],
      })
    })
    it('returns IPv6 addresses in compressed form, brackets or not', () => {
      assert.deepEqual(parseHosts('[0:0:0:0:0:0:0:1],fd00::5,FD00:0::5').ips, ['::1', 'fd00::5'])
    })
    it('returns localhost and 127.0.0.1 only when given', () => {
      assert.deepEqual(parseHosts('customs.internal'), { dns: ['customs.internal'], ips: [] })
      assert.deepEqual(parseHosts('localhost,127.0.0.1'), {
        dns: ['localhost'],
        ips: ['127.0.0.1'],
      })
    })
  })

  describe('when the input is not a list of hosts', () => {
    const cases: [string, RegExp][] = [
      ['', /no hosts given/],
      ['   ', /no hosts given/],
      ['customs.internal, 10.0.0.5', /whitespace/],
      ['my host', /whitespace/],
      ['a.io,,b.io', /empty entry/],
      ['a.io,', /empty entry/],
      ['http://x', /"http:\/\/x" is a URL.*write x$/],
      ['https://customs.internal:5000/v2/', /is a URL.*write customs\.internal$/],
      ['customs.internal:5000', /has a port.*write customs\.internal$/],
      ['*.customs.internal', /wildcards/],
      ['under_score.io', /"under_score\.io" is neither/],
      ['10.0.0', /"10\.0\.0" is neither/],
      ['-a.io', /neither/],
      ['a..io', /neither/],
      ['a/b', /neither/],
    ]
    for (const [input, message] of cases) {
      it(`refuses ${JSON.stringify(input)} with a clear message`, async () => {
        const err = await tlsError(() => parseHosts(input), 'HOSTS_INVALID')
        assert.match(err.message, message)
      })
    }
  })
})

describe('createCa', () => {
  describe('when called with the defaults', () => {
    it('returns a self-signed CA that verifies with its own key', () => {
      const x509 = new X509Certificate(ca.certPem)
      assert.equal(x509.ca, true)
      assert.equal(x509.checkIssued(x509), true)
      assert.equal(x509.verify(x509.publicKey), true)
      assert.match(x509.subject, /CN=Customs CA [0-9a-f]{8}/)
    })
    it('returns basicConstraints CA, critical, with path length 0', () => {
      const bc = extension(ca.certPem, 'basicConstraints')
      assert.deepEqual([bc.critical, bc.cA, bc.pathLenConstraint], [true, true, 0])
    })
    it('returns keyUsage keyCertSign and cRLSign only, critical', () => {
      const ku = extension(ca.certPem, 'keyUsage')
      assert.deepEqual([ku.critical, ku.keyCertSign, ku.cRLSign], [true, true, true])
      assert.equal(ku.digitalSignature, false)
    })
    it('returns a validity of 10 years that starts before now', () => {
      const x509 = new X509Certificate(ca.certPem)
      const from = new Date(x509.validFrom).getTime()
      const to = new Date(x509.validTo).getTime()
      assert.ok(from <= Date.now())
      assert.ok(Math.abs(to - Date.now() - 3650 * DAY_MS) < 60_000)
    })
    it(`returns an RSA ${KEY_BITS} key in PKCS#8 PEM`, () => {
      const x509 = new X509Certificate(ca.certPem)
      assert.equal(x509.publicKey.asymmetricKeyType, 'rsa')
      assert.equal(x509.publicKey.asymmetricKeyDetails?.modulusLength, KEY_BITS)
      assert.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----/)
    })
    it('returns an authority key identifier equal to its subject key identifier', () => {
      const ski = extension(ca.certPem, 'subjectKeyIdentifier').subjectKeyIdentifier
      assert.equal(authorityKeyId(ca.certPem), ski)
    })
  })

  describe('when given days', () => {
    it('returns a CA valid that long', async () => {
      const short = new X509Certificate((await createCa({ days: 30 })).certPem)
      assert.ok(Math.abs(new Date(short.validTo).getTime() - Date.now() - 30 * DAY_MS) < 60_000)
    })
    it('refuses 0 and fractions', async () => {
      await tlsError(() => createCa({ days: 0 }), 'DAYS_INVALID')
      await tlsError(() => createCa({ days: 1.5 }), 'DAYS_INVALID')
    })
  })
})

describe('loadCa', () => {
  describe('when the CA has expired', () => {
    it('refuses it with CA_EXPIRED and the date', async () => {
      const old = await createCa({ days: 1, now: new Date(Date.now() - 3 * DAY_MS) })
      const err = await tlsError(() => loadCa(old, { certLabel: 'dir/ca.crt' }), 'CA_EXPIRED')
      assert.match(err.message, /^dir\/ca\.crt expired on \d{4}-\d{2}-\d{2}$/)
    })
  })
  describe('when the key is another one', () => {
    it('refuses it with CA_INVALID', async () => {
      const other = await createCa()
      await tlsError(() => loadCa({ certPem: ca.certPem, keyPem: other.keyPem }), 'CA_INVALID')
    })
  })
  describe('when the certificate is not a CA', () => {
    it('refuses it with CA_INVALID', async () => {
      const leaf = await issueServerCert(loaded, parseHosts('a.io'))
      const err = await tlsError(
        () => loadCa({ certPem: leaf.certPem, keyPem: leaf.keyPem }),
        'CA_INVALID'
      )
      assert.match(err.message, /not a CA/)
    })
  })
  describe('when the files hold no PEM', () => {
    it('refuses them with CA_INVALID', async () => {
      await tlsError(() => loadCa({ certPem: 'garbage', keyPem: ca.keyPem }), 'CA_INVALID')
      await tlsError(() => loadCa({ certPem: ca.certPem, keyPem: 'garbage' }), 'CA_INVALID')
    })
  })
})

describe('issueServerCert', () => {
  let pem: string
  let x509: X509Certificate
  let chain: string

  before(async () => {
    const issued = await issueServerCert(loaded, parseHosts('customs.internal,10.0.0.5,fd00::5'))
    pem = issued.certPem
    chain = issued.chainPem
    x509 = new X509Certificate(pem)
  })

  describe('when given names and addresses', () => {
    it('returns every one in subjectAltName, IPs as IP addresses, and nothing else', () => {
      assert.equal(
        x509.subjectAltName,
        'DNS:customs.internal, IP Address:10.0.0.5, IP Address:FD00:0:0:0:0:0:0:5'
      )
      assert.equal(x509.checkHost('customs.internal'), 'customs.internal')
      assert.equal(x509.checkIP('10.0.0.5'), '10.0.0.5')
      assert.equal(x509.checkHost('localhost'), undefined)
      assert.equal(x509.checkIP('127.0.0.1'), undefined)
      assert.deepEqual(certificateHosts(pem), {
        dns: ['customs.internal'],
        ips: ['10.0.0.5', 'fd00::5'],
      })
    })
    it('returns the first name as its CN', () => {
      assert.equal(x509.subject, 'CN=customs.internal')
    })
    it('returns extendedKeyUsage serverAuth only', () => {
      assert.deepEqual(x509.keyUsage, [SERVER_AUTH])
    })
    it('returns keyUsage digitalSignature and keyEncipherment, critical, and not a CA', () => {
      const ku = extension(pem, 'keyUsage')
      assert.deepEqual(
        [ku.critical, ku.digitalSignature, ku.keyEncipherment, ku.keyCertSign],
        [true, true, true, false]
      )
      assert.equal(x509.ca, false)
    })
    it(`returns a validity of ${DEFAULT_SERVER_DAYS} days that starts before now`, () => {
      const from = new Date(x509.validFrom).getTime()
      const to = new Date(x509.validTo).getTime()
      assert.ok(from <= Date.now() && Date.now() - from <= 2 * 3600_000)
      assert.ok(Math.abs(to - Date.now() - DEFAULT_SERVER_DAYS * DAY_MS) < 60_000)
      // Apple's limit counts from notBefore: the backdating must not push it past 398 days.
      assert.ok(to - from < 398 * DAY_MS)
    })
    it('returns a certificate the CA verifies, and a chain of it then the CA', () => {
      const caX509 = new X509Certificate(ca.certPem)
      assert.equal(x509.checkIssued(caX509), true)
      assert.equal(x509.verify(caX509.publicKey), true)
      const certs = pemCertificates(chain).map((c) => new X509Certificate(c))
      assert.deepEqual(
        certs.map((c) => c.fingerprint256),
        [x509.fingerprint256, caX509.fingerprint256]
      )
    })
    it('returns an authority key identifier equal to the CA’s subject key identifier', () => {
      const caSki = extension(ca.certPem, 'subjectKeyIdentifier').subjectKeyIdentifier
      assert.equal(authorityKeyId(pem), caSki)
      assert.notEqual(extension(pem, 'subjectKeyIdentifier').subjectKeyIdentifier, caSki)
    })
  })

  describe('when issued twice', () => {
    it('returns a new key and a new serial each time', async () => {
      const a = await issueServerCert(loaded, parseHosts('a.io'))
      const b = await issueServerCert(loaded, parseHosts('a.io'))
      assert.notEqual(a.keyPem, b.keyPem)
      assert.notEqual(
        new X509Certificate(a.certPem).serialNumber,
        new X509Certificate(b.certPem).serialNumber
      )
    })
  })

  describe('when the CA expires before the validity asked for', () => {
    it('returns a certificate that ends with the CA, and says so', async () => {
      const shortCa = loadCa(await createCa({ days: 10 }))
      const issued = await issueServerCert(shortCa, parseHosts('a.io'))
      assert.equal(issued.cappedByCa, true)
      assert.equal(issued.notAfter.getTime(), shortCa.notAfter.getTime())
    })
  })

  describe('when given no hosts', () => {
    it('refuses with HOSTS_INVALID', async () => {
      await tlsError(() => issueServerCert(loaded, { dns: [], ips: [] }), 'HOSTS_INVALID')
    })
  })

  describe('when given more days than Apple accepts', () => {
    it('refuses with DAYS_INVALID', async () => {
      await tlsError(
        () => issueServerCert(loaded, parseHosts('a.io'), { days: 826 }),
        'DAYS_INVALID'
      )
    })
  })
})

describe('issueClientCert', () => {
  describe('when given a name', () => {
    it('returns a certificate for clientAuth with the name as CN, verified by the CA', async () => {
      const issued = await issueClientCert(loaded, 'node-1')
      const x509 = new X509Certificate(issued.certPem)
      assert.equal(x509.subject, 'CN=node-1')
      assert.deepEqual(x509.keyUsage, [CLIENT_AUTH])
      assert.equal(x509.subjectAltName, undefined)
      assert.equal(x509.verify(new X509Certificate(ca.certPem).publicKey), true)
      const ku = extension(issued.certPem, 'keyUsage')
      assert.deepEqual([ku.digitalSignature, ku.keyEncipherment], [true, false])
    })
  })
  describe('when the name cannot be a CN and a file name', () => {
    for (const name of ['', '../x', 'a b', '.hidden', 'x'.repeat(65)]) {
      it(`refuses ${JSON.stringify(name.slice(0, 10))} with NAME_INVALID`, async () => {
        await tlsError(() => issueClientCert(loaded, name), 'NAME_INVALID')
      })
    }
  })
})

describe('randomSerial', () => {
  describe('when drawn many times', () => {
    it('returns 128-bit positive minimal DER integers', () => {
      for (let i = 0; i < 2000; i++) {
        const hex = randomSerial()
        const bytes = Buffer.from(hex, 'hex')
        if (bytes.length === 17) assert.ok(bytes[0] === 0 && (bytes[1] ?? 0) >= 0x80, hex)
        else assert.ok(bytes.length === 16 && (bytes[0] ?? 0) > 0 && (bytes[0] ?? 0) < 0x80, hex)
      }
    })
  })
})

describe('writeFiles', () => {
  const files = [
    { name: 'x.key', contents: 'secret\n', secret: true },
    { name: 'x.crt', contents: 'public\n', secret: false },
  ]

  describe('when the files are new', () => {
    it('writes private keys with mode 0600 and certificates 0644, whatever the umask', async () => {
      const target = join(dir, 'modes')
      const previous = process.umask(0)
      try {
        await writeFiles(target, files, { replace: false })
      } finally {
        process.umask(previous)
      }
      assert.equal((await stat(join(target, 'x.key'))).mode & 0o777, 0o600)
      assert.equal((await stat(join(target, 'x.crt'))).mode & 0o777, 0o644)
      assert.equal(await readFile(join(target, 'x.key'), 'utf8'), 'secret\n')
      assert.deepEqual((await readdir(target)).sort(), ['x.crt', 'x.key'])
    })
  })

  describe('when a file exists and replace is off', () => {
    it('refuses with FILE_EXISTS and writes nothing', async () => {
      const target = join(dir, 'exists')
      await writeFiles(target, [{ name: 'x.crt', contents: 'old\n', secret: false }], {
        replace: false,
      })
      const err = await tlsError(() => writeFiles(target, files, { replace: false }), 'FILE_EXISTS')
      assert.match(err.message, /x\.crt already exists/)
      assert.deepEqual(await readdir(target), ['x.crt'])
      assert.equal(await readFile(join(target, 'x.crt'), 'utf8'), 'old\n')
    })
  })

  describe('when a file exists and replace is on', () => {
    it('replaces it, and a key that was world-readable becomes 0600', async () => {
      const target = join(dir, 'replace')
      await writeFiles(target, files, { replace: false })
      await chmod(join(target, 'x.key'), 0o644)
      await writeFiles(target, [{ name: 'x.key', contents: 'new\n', secret: true }], {
        replace: true,
      })
      assert.equal(await readFile(join(target, 'x.key'), 'utf8'), 'new\n')
      assert.equal((await stat(join(target, 'x.key'))).mode & 0o777, 0o600)
      assert.deepEqual((await readdir(target)).sort(), ['x.crt', 'x.key'])
    })
  })
})

// Renewing the signature trust on SIGHUP (verify/trust-reload.ts): rotated root and key files are
// in force for the next verification once every file passes; a file that fails leaves the whole
// previous trust in force, with one error line naming the setting and the file; a moved revision
// asks for re-evaluation, an unchanged one does not; two reloads asked at once run one after the
// other.

import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, beforeEach, describe, it } from 'node:test'
import { parseConfig } from '../../../src/config/load.js'
import { createLogger } from '../../../src/observability/logger.js'
import { loadTrust } from '../../../src/verify/trust.js'
import { TrustHolder, trustReloader, type TrustRenewal } from '../../../src/verify/trust-reload.js'
import { SignatureVerifier } from '../../../src/verify/verifier.js'
import { signedDsseBundle, signedMessageBundle } from '../../helpers/cosign.js'
import { createTestPki, keyPair, type TestKeyPair, type TestPki } from '../../helpers/pki.js'
import { logLines } from '../../helpers/logs.js'

const DIGEST = `sha256:${'ab'.repeat(32)}`

let dir: string
let pkiA: TestPki
let pkiB: TestPki
let keyA: TestKeyPair
let keyB: TestKeyPair

const trustConfig = () =>
  parseConfig(`
upstreams: [{ name: docker.io, url: "https://registry-1.docker.io", default: true }]
trust:
  roots: [{ name: corp, trustedRoot: root.json, tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 1 }]
  keys: [{ name: release, file: release.pub }]
`).trust

/** Puts `pki`'s trusted root and `key`'s public key where the configuration points. */
async function useTrust(pki: TestPki, key: TestKeyPair): Promise<void> {
  await pki.writeTrustedRoot(join(dir, 'root.json'))
  await writeFile(join(dir, 'release.pub'), key.publicKeyPem)
}

interface Setup {
  readonly holder: TrustHolder
  readonly verifier: SignatureVerifier
  readonly reload: () => Promise<TrustRenewal>
  /** The revisions re-evaluation was asked for. */
  readonly changes: string[]
  /** Every JSON log line written so far. */
  readonly logs: Array<Record<string, unknown>>
}

/** The trust as createServices builds it: the files loaded, a holder, a verifier and a reloader. */
async function setup(): Promise<Setup> {
  const config = trustConfig()
  const { destination, lines: logs } = logLines()
  const logger = createLogger({ level: 'info', destination })
  const holder = new TrustHolder(await loadTrust(config, dir))
  const changes: string[] = []
  const reload = trustReloader(config, holder, { base: dir, logger, onChange: (revision) => changes.push(revision) })
  return { holder, verifier: new SignatureVerifier(holder), reload, changes, logs }
}

/** Whether `verifier` verifies a keyed signature by `key` and a keyless one under `pki`'s root. */
function verifies(verifier: SignatureVerifier, key: TestKeyPair, pki: TestPki): { keyed: boolean; keyless: boolean } {
  const keyed = signedMessageBundle({ pki, imageDigest: DIGEST, signer: { kind: 'keyed', key } })
  const keyless = signedDsseBundle({ pki, imageDigest: DIGEST })
  return { keyed: verifier.verify(keyed.bundle, keyed.payload).ok, keyless: verifier.verify(keyless.bundle).ok }
}

const errorsOf = (logs: Array<Record<string, unknown>>) => logs.filter((l) => l.level === 'error')
const reloadedOf = (logs: Array<Record<string, unknown>>) => logs.filter((l) => l.msg === 'trust reloaded')

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'customs-trust-reload-'))
  pkiA = createTestPki()
  pkiB = createTestPki()
  keyA = keyPair('p256')
  keyB = keyPair('ed25519')
})

after(async () => {
  await rm(dir, { recursive: true, force: true })
})

beforeEach(() => useTrust(pkiA, keyA))

describe('trustReloader', () => {
  describe('when the rotated files pass', () => {
    it('puts the new root and key in force for the next verification and asks for re-evaluation', async () => {
      const { holder, verifier, reload, changes, logs } = await setup()
      const before = holder.current.revision
      assert.deepEqual(verifies(verifier, keyA, pkiA), { keyed: true, keyless: true })
      await useTrust(pkiB, keyB)
      const renewal = await reload()
      assert.notEqual(renewal.revision, before)
      assert.deepEqual(renewal, { ok: true, revision: holder.current.revision, previous: before })
      assert.equal(holder.current.revision, (await loadTrust(trustConfig(), dir)).revision)
      assert.deepEqual(verifies(verifier, keyA, pkiA), { keyed: false, keyless: false })
      assert.deepEqual(verifies(verifier, keyB, pkiB), { keyed: true, keyless: true })
      assert.deepEqual(changes, [renewal.revision])
      const reloaded = reloadedOf(logs)
      assert.equal(reloaded.length, 1)
      assert.equal(reloaded[0]?.level, 'info')
      assert.deepEqual([reloaded[0]?.revision, reloaded[0]?.previous, reloaded[0]?.roots, reloaded[0]?.keys], [renewal.revision, before, 1, 1])
      assert.ok(!JSON.stringify(logs).includes('PUBLIC KEY'))
      assert.equal(errorsOf(logs).length, 0)
    })

    it('does not ask for re-evaluation when the files are the same', async () => {
      const { holder, reload, changes, logs } = await setup()
      const before = holder.current.revision
      assert.deepEqual(await reload(), { ok: true, revision: before, previous: before })
      assert.deepEqual(changes, [])
      assert.equal(reloadedOf(logs).length, 1)
    })
  })

  describe('when a file fails its checks', () => {
    it('keeps the whole previous trust, even the files that pass, and logs one error line naming the setting and the file', async () => {
      const { holder, verifier, reload, changes, logs } = await setup()
      const trust = holder.current
      // A rotation caught half-way: the new root is in place, the key is half written.
      await pkiB.writeTrustedRoot(join(dir, 'root.json'))
      await writeFile(join(dir, 'release.pub'), keyB.publicKeyPem.slice(0, 40))
      const reason = `trust.keys[0].file: ${join(dir, 'release.pub')} is not a PEM public key`
      assert.deepEqual(await reload(), { ok: false, revision: trust.revision, previous: trust.revision, error: reason })
      assert.equal(holder.current, trust)
      assert.deepEqual(verifies(verifier, keyA, pkiA), { keyed: true, keyless: true })
      assert.deepEqual(changes, [])
      const errors = errorsOf(logs)
      assert.equal(errors.length, 1, JSON.stringify(logs))
      assert.equal(errors[0]?.reason, reason)
      assert.equal(reloadedOf(logs).length, 0)
      assert.ok(!JSON.stringify(logs).includes('PUBLIC KEY'))
    })

    it('names the root file that is not a trusted_root.json, and renews once the files are whole', async () => {
      const { holder, reload, changes } = await setup()
      await writeFile(join(dir, 'root.json'), '{"mediaType": ')
      const failed = await reload()
      assert.equal(failed.error, `trust.roots[0].trustedRoot: ${join(dir, 'root.json')} is not a valid trusted_root.json`)
      await rm(join(dir, 'root.json'))
      assert.match((await reload()).error ?? '', /^trust\.roots\[0\]\.trustedRoot: .*root\.json/)
      await useTrust(pkiB, keyB)
      const renewal = await reload()
      assert.equal(renewal.ok, true)
      assert.equal(holder.current.revision, renewal.revision)
      assert.deepEqual(changes, [renewal.revision])
    })
  })

  describe('reloads asked at once', () => {
    it('runs them one after the other: the later one starts from what the earlier one put in force', async () => {
      const { holder, reload, changes } = await setup()
      const before = holder.current.revision
      await useTrust(pkiB, keyB)
      const [first, second] = await Promise.all([reload(), reload()])
      assert.equal(first?.previous, before)
      assert.equal(second?.previous, first?.revision)
      assert.equal(holder.current.revision, second?.revision)
      // The second found nothing new: one re-evaluation, not two.
      assert.deepEqual(changes, [first?.revision])
    })
  })
})
